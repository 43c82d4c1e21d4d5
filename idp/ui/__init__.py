"""The design every page shares: the layout, the stylesheet, the branding, the landing page and the favicon."""
