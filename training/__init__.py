"""Lightning training: the module, schedules, callbacks and reports (imports Lightning;
``models`` does not)."""
