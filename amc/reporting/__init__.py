"""Reports built from finished runs: the search-method leaderboard."""
