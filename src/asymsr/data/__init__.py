"""Training and evaluation data.

* :mod:`.sources`: ``asymsr fetch`` (built-in photos, folders, S3, pinned archives);
* :mod:`.builtin`: the photographs that ship inside scikit-image (the quick profile);
* :mod:`.prepare`: image folders -> memory-mapped patches; :mod:`.patches`: the seeded loader;
* :mod:`.validation`: Great Expectations suites for image folders and patch sets.
"""
