"""The compare tab's parts, one file per part, each given plain :class:`ColumnData` (or rows) rather than asking
the session: ``grid`` (image / error / std panels, colour bars, window/level, line and rectangle),
``metrics_table``, ``profile``, ``roi``, ``calibration``. ``workbench.gui.compare_view.CompareView`` reads the
session and hands them their data."""
