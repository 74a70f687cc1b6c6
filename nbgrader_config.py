"""nbgrader configuration for SGD from Scratch (read from the repo root)."""

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "sgd-from-scratch"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# Per-cell time limit while autograding and validating, in seconds.
c.Execute.timeout = 60
# A learner who deletes a test cell gets it back from the gradebook.
c.OverwriteCells.add_missing_cells = True
# Student notebooks carry no execution timings.
c.ClearOutputPreprocessor.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}
