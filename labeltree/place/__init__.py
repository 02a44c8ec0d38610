"""Placing a new dataset's classes in a tree from data (`labeltree place`) and checking a tree's
mappings against data (`labeltree audit`).

evidence: one pass over a dataset -> per class pixels, position, size, neighbours, and (with a model)
the distribution of the model's predicted nodes over its pixels (its fingerprint).
names: string similarity of class names, descriptions and `includes` with the tree's nodes and classes.
placement: the evidence combined into one ranked list of placements per class.
report: the extension tree file and the terminal / JSON / Markdown report.
audit: the same evidence turned round: mappings whose pixels the model puts elsewhere.
"""
