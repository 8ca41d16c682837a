"""Every module here with a ``blueprint`` attribute is registered by
``app.register_blueprints("tracker.blueprints")`` (slide 22)."""
