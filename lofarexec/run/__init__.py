"""One ``_schedule_jobs`` call: runner, scheduler, placement, journal and the recipe's outputs.

:class:`~lofarexec.run.runner.JobRunner` wires the parts for one batch;
:class:`~lofarexec.run.scheduler.Scheduler` decides what starts when (its docstring draws the
data flow); the journal is a plugin of the lifecycle hooks.
"""
