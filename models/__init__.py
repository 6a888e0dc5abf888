"""SQLAlchemy 2 models and the domain operations on them, one module per bounded context."""
