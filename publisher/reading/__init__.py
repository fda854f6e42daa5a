"""Reading: post files → `Post` values (front matter, dates, clean-ups, HTML), with a parse cache."""
