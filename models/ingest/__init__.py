"""WePeople ingest, a module per concern; callers import from the one they need.

- tables: workers, their synthetic app connections, timeline events, the latest snapshot
  per worker per app, the monthly usage (imports nothing else of the package);
- rules: what the contract says about ingestion, and what a batch answers;
- encoding: the JSON writer, the timestamp parser, COPY text;
- actors: which worker each actor names, creating the missing ones;
- quota: the plan's monthly quota of accepted events;
- writer: timeline rows in one statement (COPY on PostgreSQL);
- service: a batch of events or a snapshot, accepted or rejected and persisted;
- reading: an organization's timeline and user strip (the admin CLI).
"""
