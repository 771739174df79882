//! spate-log: one partition's log on disk.
