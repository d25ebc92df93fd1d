"""The one schema: every configuration (:mod:`.params`, :mod:`.bench`) and every record a stage
writes (:mod:`.records`).

Pure pydantic, no torch: the CLI imports it at start-up to build its flags.
"""
