"""Package data: the default caption blocklists (blocklist_<lang>.txt), written for this project."""
