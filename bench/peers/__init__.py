"""The systems we compare against, each started as its own server process on a free port."""
