"""The consensus stage: a second (and third) opinion on the shortlist before DFT.

hull → shortlist (per chemical system, by the primary model) → each listed potential scores it
(one single point at the primary's relaxed structure, or a relaxation from it) → per model a
reference and a campaign hull → the consensus value, the spread and ``is_stable_consensus``
in every shortlisted candidate's document → validation picks by an acquisition rule.
"""
