"""reproduce.py's parts: figures (the registry), runner (running or submitting its runs), claims (the paper's
claims and their rules), report (REPORT.md)."""
