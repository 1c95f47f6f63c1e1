"""The jobs and what runs them: the RQ jobs themselves (on top of everything they use, imported
by nothing), the job runner process and its in-process form, and the timed jobs on RQ's cron."""
