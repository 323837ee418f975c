"""The kernel's own words: its log records and the reports it prints."""
