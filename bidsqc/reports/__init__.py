"""HTML reports: a page per scan that shows why (``scan_report``), a group page to sweep a
whole study (``group_report``), and rating in the browser that exports ``bidsqc-train --labels``
TSVs. Templates are Jinja2 with autoescaping; pictures are made with matplotlib
(bidsqc.reports.figures). Paths: docs/usage.md."""
