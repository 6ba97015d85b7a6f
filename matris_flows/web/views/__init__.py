"""The app's pages, one module each: ``layout(...)`` builds the page, ``register(app, reader)`` its callbacks."""
