"""Files: atomic writes and hashes (:mod:`.fs`), image files read and written with errors that
name them (:mod:`.images`), the package's own import graph (:mod:`.imports`)."""
