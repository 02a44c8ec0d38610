"""Label spaces and the tree: taxonomy files, tree files, merging them, and the tables compiled from a tree."""
