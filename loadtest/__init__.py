"""fanbench's load generator and local stage: Locust users, the recorder, coordination."""
