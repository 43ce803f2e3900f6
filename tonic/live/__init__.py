"""`tonic serve`'s live page: each notebook's state, its runs, edits, the web app."""
