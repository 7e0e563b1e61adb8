"""Generator training: presets, cohort data, one resumable loop per stage (``vct train``)."""
