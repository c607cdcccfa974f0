"""Small pieces every stage shares: errors, atomic files, the workspace layout, CLI plumbing."""
