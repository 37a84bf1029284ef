"""Progress of a sweep as its jobs see it (set by a launcher that runs jobs in this process)."""

from __future__ import annotations

# "[3/18] " in front of each job's log line when a launcher runs several jobs in this process.
job_prefix = ""
