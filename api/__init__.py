"""The Todo service: settings, the app factory and the security primitives."""
