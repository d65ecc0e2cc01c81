"""The main window: menus, tabs (scan, sampling, compare, sweep), docks (scan info, methods, jobs), status bar.

Everything it shows comes from the :class:`~workbench.session.Session`; errors a user can cause (a bad file, a
broken plugin, a failing job) end in a message and the window keeps working.
"""

from __future__ import annotations

import os
import platform
import traceback
from typing import Any, Callable, Iterable

from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.errors import SamplingError, WorkbenchError
from workbench.gui.common import SCAN_FILTER, DialogFolder, Dispatcher, Qt, error_box
from workbench.gui.compare_view import CompareView
from workbench.gui.jobs_panel import JobsPanel
from workbench.gui.methods_panel import MethodsPanel
from workbench.gui.sampling_panel import SamplingPanel
from workbench.gui.scan_view import ScanDock, ScanView
from workbench.gui.sweep_view import SweepView
from workbench.gui.volume_panel import VolumePanel
from workbench.io.writers import safe_name
from workbench.session import ACQUIRED, PROJECT_FORMAT, Session
from workbench.session.volume_runs import VolumeRun, VolumeRuns

MAX_RECENT = 10
SESSION_FILTER = "Workbench session (*.wbs.json *.json)"
#: the first window takes 90 % of the screen's available area, at least this much (a laptop screen)
MIN_FIRST_SIZE = (1280, 720)
#: room left around the window for its frame (title bar, borders) that Qt does not know before it is shown
FRAME_ALLOWANCE = (16, 48)
#: the jobs dock's share of the window height
JOBS_DOCK_SHARE = 0.22


def first_window_size(available: QtCore.QRect) -> QtCore.QSize:
    """The first window's size on a screen whose available area (without task bars) is ``available``: 90 % of
    it, at least :data:`MIN_FIRST_SIZE`, never more than the area less the frame."""
    w = min(available.width() - FRAME_ALLOWANCE[0], max(int(0.9 * available.width()), MIN_FIRST_SIZE[0]))
    h = min(available.height() - FRAME_ALLOWANCE[1], max(int(0.9 * available.height()), MIN_FIRST_SIZE[1]))
    return QtCore.QSize(w, h)


class MainWindow(QtWidgets.QMainWindow):
    """The workbench window. ``plugin_dirs``: extra folders of drop-in plugins; ``settings``: a QSettings
    (default: the application's)."""

    def __init__(self, plugin_dirs: Iterable[str] = (), settings: QtCore.QSettings | None = None,
                 session: Session | None = None, registry: Any = None):
        super().__init__()
        self.settings = settings or QtCore.QSettings()
        self.plugin_dirs = [os.fspath(d) for d in plugin_dirs]
        self.dispatcher = Dispatcher(self)
        self.session = session or Session(dispatch=self.dispatcher)
        if session is not None:
            session.dispatch = self.dispatcher
        # slow derived images (radial zero-filled image, PSF) are computed off the GUI thread
        self.session.background_derived = True
        self.registry = registry if registry is not None else self._discover()
        # the application's display name ("MRI Workbench") is added to the title by Qt
        self.setWindowTitle("")
        self.setAcceptDrops(True)
        self.dialogs = DialogFolder(self.settings)
        self.fit_to_screen()

        self.tabs = QtWidgets.QTabWidget()
        self.scan_view = ScanView(self.session)
        self.sampling_panel = SamplingPanel(self.session)
        self.compare_view = CompareView(self.session)
        self.tabs.addTab(self.scan_view, "Scan")
        self.tabs.addTab(self.sampling_panel, "Sampling")
        self.tabs.addTab(self.compare_view, "Compare")
        self.setCentralWidget(self.tabs)
        self.sampling_panel.dialogs = self.compare_view.dialogs = self.dialogs

        self.scan_dock_widget = ScanDock(self.session)
        self.methods_panel = MethodsPanel(self.session, self.registry)
        self.jobs_panel = JobsPanel(self.session)
        self.sweep_view = SweepView(self.session, self.methods_panel)
        self.sweep_view.dialogs = self.dialogs
        self.tabs.addTab(self.sweep_view, "Sweep")
        self.scan_dock = self._dock("Scan", self.scan_dock_widget, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.methods_dock = self._dock("Methods", self.methods_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.jobs_dock = self._dock("Jobs", self.jobs_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        # "Run on volume": plain-Python runs (workbench.session.volume_runs), shown in a dock beside the jobs
        self.volume_runs = VolumeRuns(post=lambda fn: self.session.dispatch(fn))
        self.volume_panel = VolumePanel(self.volume_runs)
        self.volume_runs.on_change = self.volume_panel.update_run
        self.volume_dock = self._dock("Volume", self.volume_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.jobs_dock, self.volume_dock)
        self.jobs_dock.raise_()
        self.volume_dock.hide()  # until the first volume run: its tab bar would cost the jobs table a row
        self.methods_panel.volume_requested.connect(lambda: self.run_volume())
        self.methods_panel.ran.connect(lambda *_: self.jobs_dock.raise_())
        # narrow enough that the compare grid keeps most of a 1366 px wide screen
        self.scan_dock_widget.setMinimumWidth(210)
        self.methods_panel.setMinimumWidth(250)
        self.fit_docks()

        self.hover_label = QtWidgets.QLabel("")
        self.hover_label.setMinimumWidth(320)
        self.scan_label = QtWidgets.QLabel("no scan")
        self.device_label = QtWidgets.QLabel("")
        sb = self.statusBar()
        sb.addWidget(self.hover_label, 1)
        sb.addPermanentWidget(self.scan_label)
        sb.addPermanentWidget(self.device_label)
        for w in (self.scan_view, self.sampling_panel, self.compare_view):
            w.hovered.connect(self._on_hover)

        self._build_menus()
        self.session.subscribe("scan", lambda *_: self._on_scan())
        self.session.subscribe("slice", lambda *_: self._update_scan_label())
        self.session.subscribe("sampling", lambda *_: self._update_edit_actions())
        self._restore_layout()
        self._update_device_label()
        self._report_plugin_errors_in_status()
        self._update_edit_actions()

    # ----------------------------------------------------------------------------------------------------------
    # construction
    def _discover(self):
        from workbench.methods import discover_methods

        return discover_methods(self.plugin_dirs)

    def _dock(self, title: str, widget: QtWidgets.QWidget, area: Qt.DockWidgetArea) -> QtWidgets.QDockWidget:
        d = QtWidgets.QDockWidget(title, self)
        d.setObjectName(f"dock-{title.lower()}")
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _action(self, menu: QtWidgets.QMenu, text: str, slot: Callable[[], Any], shortcut: Any = None,
                tip: str = "") -> QtGui.QAction:
        a = QtGui.QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QtGui.QKeySequence(shortcut))
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        a.triggered.connect(lambda *_: slot())
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        K = QtGui.QKeySequence.StandardKey
        self.open_action = self._action(f, "&Open scan…", self.open_dialog, K.Open, "open a raw k-space file")
        self.open_options_action = self._action(
            f, "Open with &options…", self.open_options_dialog, "Ctrl+Shift+K",
            "open a scan with a chosen reader and reader options (key=value, see docs/formats.md)")
        self.demo_action = self._action(f, "Open &demo scan", self.open_demo, "Ctrl+D",
                                        "open the built-in synthetic 16-coil brain scan")
        self.recent_menu = f.addMenu("Open &recent")
        f.addSeparator()
        self._action(f, "Open &session…", self.open_session_dialog, "Ctrl+Shift+O", "reopen a saved session")
        self.save_session_action = self._action(f, "&Save session…", self.save_session_dialog, K.Save,
                                                "save scan path, sampling, results and parameters")
        f.addSeparator()
        ex = f.addMenu("&Export")
        self._action(ex, "Comparison &figure (PNG)…", self.export_figure_dialog, "Ctrl+E",
                     "the compare grid as a labelled PNG")
        self._action(ex, "Images as &NIfTI…", lambda: self.export_images_dialog("nifti"),
                     tip="reference, zero-filled and shown results as .nii.gz")
        self._action(ex, "Images as &DICOM…", lambda: self.export_images_dialog("dicom"),
                     tip="reference, zero-filled and shown results as DICOM MR images")
        self._action(ex, "Results as &HDF5…", self.export_results_dialog,
                     tip="every finished result with its parameters (workbench result files)")
        self._action(ex, "Metrics as &CSV…", self.compare_view.export_csv_dialog, tip="the metrics table")
        f.addSeparator()
        self._action(f, "&Quit", self.close, K.Quit)

        e = mb.addMenu("&Edit")
        self.undo_action = self._action(e, "&Undo mask edit", self.session.undo, K.Undo)
        self.redo_action = self._action(e, "&Redo mask edit", self.session.redo, "Ctrl+Shift+Z")

        v = mb.addMenu("&View")
        self._action(v, "Previous slice", lambda: self._step_slice(-1), "PgUp")
        self._action(v, "Next slice", lambda: self._step_slice(1), "PgDown")
        v.addSeparator()
        for i, name in enumerate(("Scan", "Sampling", "Compare", "Sweep")):
            self._action(v, f"{name} tab", lambda i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        v.addSeparator()
        for d in (self.scan_dock, self.methods_dock, self.jobs_dock, self.volume_dock):
            v.addAction(d.toggleViewAction())
        self._action(v, "Reset layout", self.reset_layout)

        r = mb.addMenu("&Run")
        self._action(r, "&Run selected method on slice", self.methods_panel.run_current, "Ctrl+R")
        self._action(r, "Run on &volume…", self.run_volume, "Ctrl+Shift+R",
                     "the selected method on every slice as one job, saved to one file (the Volume dock shows it)")
        self._action(r, "&Cancel all jobs", self.jobs_panel.cancel_all, "Ctrl+.")
        r.addSeparator()
        self._action(r, "Reload &plugins", self.reload_plugins, "F5", "discover plugins again")

        h = mb.addMenu("&Help")
        self._action(h, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        self._action(h, "&About", self.show_about)
        self._refresh_recent_menu()

    # ----------------------------------------------------------------------------------------------------------
    # opening
    def open_dialog(self) -> None:
        path = self.dialogs.open_file(self, "Open scan", SCAN_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str, **options: Any) -> bool:
        """Open a scan (with reader ``options``, e.g. ``format="mat", coil_axis=-1``) or, for a session file,
        the session. Errors end in a dialog; returns success."""
        if _is_session_file(path) and not options:
            return self.open_session(path)
        ok = self._guard("Cannot open scan", lambda: self.session.open(path, **options), path)
        if ok:
            self._remember_options(path, options)
        return ok

    # reader options of recent files, so that File > Open recent reopens a file the way it was opened
    def _recent_options(self) -> dict[str, dict[str, Any]]:
        import json

        try:
            v = json.loads(self.settings.value("recent_options", "{}", type=str) or "{}")
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}

    def _remember_options(self, path: str, options: dict[str, Any]) -> None:
        import json

        from workbench.arrays import jsonable

        rec = self._recent_options()
        key = os.path.abspath(path)
        if options:
            rec[key] = jsonable(options)
        else:
            rec.pop(key, None)
        keep = set(self.recent_files())
        self.settings.setValue("recent_options", json.dumps({k: v for k, v in rec.items() if k in keep}))

    def _open_recent(self, path: str) -> bool:
        opts = self._recent_options().get(os.path.abspath(path)) or {}
        # JSON turned tuples into lists; readers take both for shapes
        return self.open_path(path, **opts)

    def open_options_dialog(self) -> bool:
        """File > Open with options…: path, reader and ``key=value`` reader options."""
        from workbench.gui.open_dialog import OpenOptionsDialog, format_options

        s = self.session
        path = s.scan.path if s.scan is not None and s.scan.path else ""
        opts = {k: v for k, v in s.scan_options.items() if k != "format"} if path else {}
        dlg = OpenOptionsDialog(self, path=path or "", options=format_options(opts),
                                start_dir=self.dialogs.folder)
        if s.scan_options.get("format") and path:
            dlg.format_combo.setCurrentText(str(s.scan_options["format"]))
        if dlg.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return False
        path, options = dlg.result_values()
        return self.open_path(path, **options)

    def open_demo(self) -> bool:
        self.statusBar().showMessage("preparing the demo scan (first time only)…")
        QtWidgets.QApplication.processEvents()
        ok = self._guard("Cannot open the demo scan", self.session.open_demo)
        self.statusBar().clearMessage()
        return ok

    def _guard(self, title: str, fn: Callable[[], Any], path: str | None = None) -> bool:
        QtWidgets.QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            fn()
        except WorkbenchError as exc:
            QtWidgets.QApplication.restoreOverrideCursor()
            QtWidgets.QMessageBox.warning(self, title, str(exc))
            return False
        except (OSError, ValueError, KeyError, TypeError, MemoryError, RuntimeError) as exc:
            QtWidgets.QApplication.restoreOverrideCursor()
            where = f"{path}: " if path and path not in str(exc) else ""
            error_box(self, title, f"{where}{type(exc).__name__}: {exc}", traceback.format_exc())
            return False
        QtWidgets.QApplication.restoreOverrideCursor()
        if path:
            self._add_recent(path)
        return True

    def _on_scan(self) -> None:
        s = self.session
        scan = s.scan
        self.setWindowTitle(scan.name)
        if scan.path:
            self._add_recent(scan.path)
            self.dialogs.remember(scan.path)
        self._update_scan_label()
        self.sweep_view.refresh_methods()

    def _update_scan_label(self) -> None:
        s = self.session
        if s.scan is None:
            self.scan_label.setText("no scan")
            return
        sc = s.scan
        kind = "Cartesian" if sc.is_cartesian else "non-Cartesian"
        self.scan_label.setText(f"{sc.name}: {kind}, {sc.n_coils} coils, slice {s.slice_index + 1}/{sc.n_slices}, "
                                f"grid {sc.grid_shape[0]}x{sc.grid_shape[1]}")

    def _step_slice(self, d: int) -> None:
        if self.session.scan is not None:
            self.session.set_slice(self.session.slice_index + d)

    # --- recent files ------------------------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        v = self.settings.value("recent_files", [], type=list)
        return [str(p) for p in (v or [])]

    def _add_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        rec = [p for p in self.recent_files() if p != path]
        rec.insert(0, path)
        self.settings.setValue("recent_files", rec[:MAX_RECENT])
        self._refresh_recent_menu()

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        rec = self.recent_files()
        for p in rec:
            a = self.recent_menu.addAction(os.path.basename(p))
            a.setToolTip(p)
            a.setStatusTip(p)
            a.triggered.connect(lambda _=False, p=p: self._open_recent(p))
        if not rec:
            a = self.recent_menu.addAction("(none)")
            a.setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            clear.triggered.connect(lambda: (self.settings.setValue("recent_files", []), self._refresh_recent_menu()))

    # --- drag and drop -----------------------------------------------------------------------------------------
    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.open_path(paths[0])

    # ----------------------------------------------------------------------------------------------------------
    # sessions
    def save_session_dialog(self) -> None:
        if self.session.scan is None:
            error_box(self, "Save session", "open a scan first")
            return
        path = self.dialogs.save_file(self, "Save session", "session.wbs.json", SESSION_FILTER)
        if path:
            self.save_session(path)

    def save_session(self, path: str) -> bool:
        return self._guard("Cannot save the session", lambda: self.session.save(path))

    def open_session_dialog(self) -> None:
        path = self.dialogs.open_file(self, "Open session", SESSION_FILTER)
        if path:
            self.open_session(path)

    def open_session(self, path: str) -> bool:
        return self._guard("Cannot open the session", lambda: self.session.load(path), path)

    # ----------------------------------------------------------------------------------------------------------
    # export
    def export_figure_dialog(self) -> None:
        path = self.dialogs.save_file(self, "Export figure", "comparison.png", "PNG (*.png)")
        if path:
            self.export_figure(path)

    def export_figure(self, path: str) -> bool:
        s = self.session
        title = ""
        if s.scan is not None:
            title = f"{s.scan.name}, slice {s.slice_index + 1}, {s.sampling_state.describe()}"
        return self._guard("Cannot export the figure", lambda: self.compare_view.export_figure(path, title))

    def _export_images_list(self) -> list[tuple[str, Any]]:
        s = self.session
        out = []
        for key in self.compare_view.keys():
            img = s.image_for(key)
            if img is not None:
                label = key if isinstance(key, str) else s.entry(key).label
                out.append((f"slice{s.slice_index + 1}_{label}", img))
        return out

    def export_images_dialog(self, fmt: str) -> None:
        if self.session.scan is None:
            error_box(self, "Export images", "open a scan first")
            return
        folder = self.dialogs.existing_folder(self, f"Export images as {fmt.upper()} into")
        if folder:
            self.export_images(folder, fmt)

    def export_images(self, folder: str, fmt: str) -> list[str]:
        from workbench.io.writers import export_images

        written: list[str] = []
        ok = self._guard("Cannot export the images", lambda: written.extend(
            export_images(folder, self._export_images_list(), fmt, self.session.scan)))
        if ok:
            self.statusBar().showMessage(f"wrote {len(written)} {fmt} files to {folder}", 5000)
        return written

    def export_results_dialog(self) -> None:
        folder = self.dialogs.existing_folder(self, "Export results (HDF5) into")
        if folder:
            self.export_results(folder)

    def export_results(self, folder: str) -> list[str]:
        from workbench.io.writers import export_results_hdf5

        written: list[str] = []
        self._guard("Cannot export the results", lambda: written.extend(
            export_results_hdf5(folder, self.session.results, self.session.scan)))
        return written

    # ----------------------------------------------------------------------------------------------------------
    # plugins, status, about
    def reload_plugins(self) -> None:
        self.registry = self._discover()
        self.methods_panel.set_registry(self.registry)
        self.sweep_view.refresh_methods()
        self._report_plugin_errors_in_status()

    def _report_plugin_errors_in_status(self) -> None:
        n = len(self.registry.errors)
        if n:
            self.statusBar().showMessage(f"{n} plugin(s) failed to load: see the Methods panel", 10000)

    def _update_device_label(self) -> None:
        try:
            dev = self.session.compute_device
        except WorkbenchError as exc:
            dev = f"device error: {exc}"
        self.device_label.setText(f"device: {dev}")
        self.device_label.setToolTip(device_description())

    def _update_edit_actions(self) -> None:
        self.undo_action.setEnabled(self.session.can_undo)
        self.redo_action.setEnabled(self.session.can_redo)

    def _on_hover(self, row: int, col: int, value: float, name: str) -> None:
        # row -1: the pointer left the image, its value is no longer under it
        self.hover_label.setText(f"{name}: row {row}, col {col}, value {value:.5g}" if row >= 0 else "")

    def show_shortcuts(self) -> None:
        lines = []
        for menu in self.menuBar().findChildren(QtWidgets.QMenu):
            for a in menu.actions():
                if not a.shortcut().isEmpty():
                    lines.append(f"{a.shortcut().toString():>14}   {a.text().replace('&', '')}")
        QtWidgets.QMessageBox.information(self, "Keyboard shortcuts", "\n".join(sorted(set(lines))))

    def about_text(self) -> str:
        import numpy
        import pyqtgraph
        import torch

        from workbench import __version__

        qt = QtCore.QT_VERSION_STR
        from PyQt6.QtCore import PYQT_VERSION_STR

        return (f"<h3>MRI Workbench {__version__}</h3>"
                "<p>Open raw k-space, undersample, reconstruct with plugins, compare.</p>"
                f"<p>Python {platform.python_version()}<br>PyTorch {torch.__version__}<br>NumPy {numpy.__version__}"
                f"<br>Qt {qt}, PyQt {PYQT_VERSION_STR}, pyqtgraph {pyqtgraph.__version__}</p>"
                f"<p>Compute device: {device_description()}</p>"
                f"<p>Plugins: {len(self.registry.methods)} methods, {len(self.registry.errors)} failed to load</p>")

    def show_about(self) -> None:
        QtWidgets.QMessageBox.about(self, "About MRI Workbench", self.about_text())

    # ----------------------------------------------------------------------------------------------------------
    # size and layout persistence
    def available_geometry(self) -> QtCore.QRect:
        """The available area (without task bars) of the screen the window is on."""
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def fit_to_screen(self) -> None:
        """Size the window to its screen (:func:`first_window_size`), centred on it."""
        available = self.available_geometry()
        size = first_window_size(available)
        self.resize(size)
        self.move(available.x() + (available.width() - size.width()) // 2,
                  available.y() + (available.height() - size.height() - FRAME_ALLOWANCE[1] + 8) // 2)

    def fit_docks(self) -> None:
        """Dock sizes for the window's: the jobs dock :data:`JOBS_DOCK_SHARE` of its height, the side docks
        narrow enough to leave the tabs most of its width."""
        self.resizeDocks([self.jobs_dock], [max(150, int(JOBS_DOCK_SHARE * self.height()))],
                         Qt.Orientation.Vertical)
        self.resizeDocks([self.scan_dock, self.methods_dock], [max(230, int(0.16 * self.width())),
                                                                max(250, int(0.2 * self.width()))],
                         Qt.Orientation.Horizontal)

    def _restore_layout(self) -> None:
        # a geometry saved on a larger screen (or a screen no longer there) would put docks and the status bar
        # out of sight: it is restored only when it fits the available area
        geo = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        size = self.settings.value("window/size")
        available = self.available_geometry()
        if not isinstance(geo, (QtCore.QByteArray, bytes)) or (isinstance(size, QtCore.QSize) and (
                size.width() > available.width() or size.height() > available.height())):
            return  # (Qt would shrink it to the screen, which is not what was saved either)
        first = self.geometry()
        self.restoreGeometry(geo)
        if not available.contains(self.frameGeometry()):
            self.setGeometry(first)
            return
        if isinstance(state, (QtCore.QByteArray, bytes)):
            self.restoreState(state)

    def reset_layout(self) -> None:
        for d, area in ((self.scan_dock, Qt.DockWidgetArea.LeftDockWidgetArea),
                        (self.methods_dock, Qt.DockWidgetArea.RightDockWidgetArea),
                        (self.jobs_dock, Qt.DockWidgetArea.BottomDockWidgetArea)):
            d.setFloating(False)
            self.addDockWidget(area, d)
            d.show()
        self.volume_dock.setFloating(False)
        self.tabifyDockWidget(self.jobs_dock, self.volume_dock)
        self.jobs_dock.raise_()
        self.volume_dock.hide()
        self.fit_docks()

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/size", self.size())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()
        self.volume_runs.shutdown(timeout=2.0)
        self.session.shutdown(timeout=2.0)
        super().closeEvent(ev)

    # ----------------------------------------------------------------------------------------------------------
    # whole volumes
    def run_volume(self, path: str | None = None) -> VolumeRun | None:
        """"Run on volume": the selected method with its form's parameters on every slice, with the current
        sampling, as one background job (the Volume dock shows its progress and slices) saved to ``path`` (asked
        for when None; no run when the dialog is cancelled)."""
        method, s = self.methods_panel.current_method(), self.session
        if method is None or s.scan is None:
            return None
        if path is None:
            stem = os.path.splitext(os.path.basename(s.scan.path or "scan"))[0]
            path = self.dialogs.save_file(self, "Save the volume result", f"{stem}_{safe_name(method.name)}_volume.h5",
                                          "Volume result (*.h5);;NIfTI magnitude (*.nii.gz);;NumPy stack (*.npy)")
            if not path:
                return None
        st = s.sampling_state
        try:
            if st.kind != ACQUIRED and st.sampling is None:
                raise SamplingError("the mask is empty: draw or choose a sampling first")
            run = self.volume_runs.start(
                s.scan, method, self.methods_panel.form.values(), sampling=None if st.kind == ACQUIRED else st.sampling,
                device=s.compute_device, path=path, dcf_method=None if s.scan.is_cartesian else s.acquired_dcf_method,
                score_mode=s.score_mode)
        except Exception as exc:  # bad parameters, an empty mask: tell the user, keep going
            error_box(self, "Cannot run on the volume", str(exc))
            return None
        self.volume_dock.show()
        self.volume_dock.raise_()
        return run


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"CUDA ({names})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _is_session_file(path: str) -> bool:
    if not path.lower().endswith(".json"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return PROJECT_FORMAT in head
