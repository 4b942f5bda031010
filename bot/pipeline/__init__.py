"""The pipeline: intake, scoring, index ticks, delivery and their queues; supervisor, status."""
