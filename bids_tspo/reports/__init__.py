"""HTML reports: figures (matplotlib/nilearn SVG) and rendering (Jinja2 templates)."""
