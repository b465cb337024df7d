"""The store: records through SQLAlchemy (db.py) and content-addressed artifacts on disk
(artifacts.py). The only code that touches the database."""
