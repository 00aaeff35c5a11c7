"""Pictures and reports: timelines, plots, the HTML/Markdown reports."""
