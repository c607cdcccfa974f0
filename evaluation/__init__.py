"""GAP@20, Hit@1 and PERR as the YouTube-8M challenges score them; scoring CSVs; the leaderboard."""
