"""What a run produces: parsed pages, their Markdown and JSON, figure crops."""
