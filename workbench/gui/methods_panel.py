"""The methods dock: every discovered plugin with its capabilities, the ones that cannot run on the current data
greyed with the reason from ``check``, plugins that failed to load with their error, a parameter form generated
from the selected method's declaration, and Run buttons."""

from __future__ import annotations

from typing import Any

from PyQt6 import QtCore, QtGui, QtWidgets

from workbench.gui.common import Qt, error_box, push_button, single_shot_timer
from workbench.gui.param_form import ParamForm
from workbench.session import Session

ROLE_METHOD = Qt.ItemDataRole.UserRole
ROLE_ERROR = Qt.ItemDataRole.UserRole + 1


class MethodsPanel(QtWidgets.QWidget):
    """Lists ``registry.methods`` and ``registry.errors``; runs the selected method through the session.

    Signals:
        ran(entry): a run was submitted (the main window switches to the jobs panel).
    """

    ran = QtCore.pyqtSignal(object)
    #: "Run on volume" was asked for (the window runs it: :meth:`MainWindow.run_volume`)
    volume_requested = QtCore.pyqtSignal()

    def __init__(self, session: Session, registry: Any, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.registry = registry
        self.reasons: dict[str, list[str]] = {}
        self._params: dict[str, dict[str, Any]] = {}  # last form values per method
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(["method", "capabilities"])
        self.tree.setRootIsDecorated(False)
        self.tree.setToolTip("reconstruction methods found (built-in plugins, installed packages, plugin folders)")
        self.tree.currentItemChanged.connect(self._on_current)
        lay.addWidget(self.tree, 2)
        self.info = QtWidgets.QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.info)
        box = QtWidgets.QGroupBox("Parameters")
        bl = QtWidgets.QVBoxLayout(box)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.form = ParamForm()
        scroll.setWidget(self.form)
        bl.addWidget(scroll)
        lay.addWidget(box, 3)
        row = QtWidgets.QHBoxLayout()
        self.run_button = push_button("Run on slice", "reconstruct the current slice with the current sampling "
                                      "(Ctrl+R)", self.run_current)
        self.volume_button = push_button("Run on volume", "every slice with the same sampling and parameters, as one "
                                         "job saved to one file (Ctrl+Shift+R; the Volume dock shows it)",
                                         self.run_volume)
        self.reset_button = QtWidgets.QToolButton()
        self.reset_button.setText("Reset")  # (short: the row fits a 1280-pixel screen's dock)
        self.reset_button.setToolTip("reset the parameters to the method's defaults")
        self.reset_button.clicked.connect(self._reset_params)
        row.addWidget(self.run_button, 1)
        row.addWidget(self.volume_button)
        row.addWidget(self.reset_button)
        lay.addLayout(row)
        self._check_timer = single_shot_timer(self, 250, self._check_now)
        for ev in ("scan", "slice", "sampling"):
            session.subscribe(ev, lambda *_: self._check_timer.start())
        session.subscribe("scan", lambda *_: self._on_new_scan())
        self.populate()

    # ----------------------------------------------------------------------------------------------------------
    def set_registry(self, registry: Any) -> None:
        self.registry = registry
        self.populate()
        self._check_timer.start()

    def populate(self) -> None:
        current = self.current_method_name()
        self.tree.clear()
        for name, method in self.registry.methods.items():
            item = QtWidgets.QTreeWidgetItem([name, ", ".join(method.capabilities.labels())])
            item.setData(0, ROLE_METHOD, name)
            src = getattr(self.registry, "sources", {}).get(name, "")
            item.setToolTip(0, f"{method.description or name}\nversion {method.version}\nfrom {src}")
            item.setToolTip(1, _caps_text(method.capabilities))
            self.tree.addTopLevelItem(item)
        for err in self.registry.errors:
            label = err.name or err.source.rsplit("/", 1)[-1]
            item = QtWidgets.QTreeWidgetItem([f"⚠ {label}", "failed to load"])
            item.setData(0, ROLE_ERROR, err)
            item.setForeground(0, QtGui.QBrush(QtGui.QColor("#e0605a")))
            item.setForeground(1, QtGui.QBrush(QtGui.QColor("#e0605a")))
            item.setToolTip(0, f"{err.source}\n{err.message}")
            self.tree.addTopLevelItem(item)
        self.tree.resizeColumnToContents(0)
        self._apply_reasons()
        if current is not None:
            self.select(current)
        elif self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))

    def select(self, name: str) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            if it.data(0, ROLE_METHOD) == name:
                self.tree.setCurrentItem(it)
                return True
        return False

    def current_method_name(self) -> str | None:
        it = self.tree.currentItem()
        return None if it is None else it.data(0, ROLE_METHOD)

    def current_method(self):
        name = self.current_method_name()
        return None if name is None else self.registry.methods.get(name)

    def params_for(self, name: str) -> dict[str, Any]:
        """The parameter values set for method ``name`` (the form's when it is selected; {} = defaults)."""
        if name == self.current_method_name():
            return self.form.values()
        return dict(self._params.get(name, {}))

    def plugin_errors_shown(self) -> list[str]:
        """Texts of the failed-plugin rows (for tests and the About box)."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            err = it.data(0, ROLE_ERROR)
            if err is not None:
                out.append(f"{err.source}: {err.message}")
        return out

    # ----------------------------------------------------------------------------------------------------------
    def _on_current(self, item: QtWidgets.QTreeWidgetItem | None, previous: QtWidgets.QTreeWidgetItem | None) -> None:
        if previous is not None and previous.data(0, ROLE_METHOD):
            self._params[previous.data(0, ROLE_METHOD)] = self.form.values()
        if item is None:
            return
        err = item.data(0, ROLE_ERROR)
        if err is not None:
            self.form.set_specs([])
            self.info.setText(f"<span style='color:#e0605a'><b>Could not load</b> {err.source}:<br>"
                              f"{_html(err.message)}</span>")
            self.info.setToolTip(err.traceback)
            self._update_buttons()
            return
        name = item.data(0, ROLE_METHOD)
        method = self.registry.methods[name]
        try:
            specs = method.param_specs()
        except Exception as exc:  # validated at discovery; kept defensive for hot-reloaded plugins
            specs = []
            self.info.setText(f"parameter declaration error: {exc}")
        self.form.set_specs(specs)
        if name in self._params:
            self.form.set_values(self._params[name])
        self.info.setToolTip("")
        self._update_info()
        self._update_buttons()

    def _update_info(self) -> None:
        method = self.current_method()
        if method is None:
            return
        text = f"<b>{method.name}</b> {method.version}<br>{_html(method.description or '')}"
        reasons = self.reasons.get(method.name)
        if reasons:
            text += "<br><span style='color:#e0a040'>Cannot run here: " + _html("; ".join(reasons)) + "</span>"
        self.info.setText(text)

    def _update_buttons(self) -> None:
        method = self.current_method()
        ok = method is not None and self.session.scan is not None and not self.reasons.get(method.name)
        self.run_button.setEnabled(ok)
        self.volume_button.setEnabled(ok and self.session.scan is not None and self.session.scan.n_slices > 1)
        self.reset_button.setEnabled(method is not None)

    def _reset_params(self) -> None:
        method = self.current_method()
        if method is not None:
            self._params.pop(method.name, None)
            self.form.set_specs(method.param_specs())

    def _on_new_scan(self) -> None:
        # reasons about the previous scan are stale; the check of the new one arrives shortly
        self.reasons = {}
        self._apply_reasons()
        self._update_info()
        self._update_buttons()

    def _check_now(self) -> None:
        if self.session.scan is None or not self.registry.methods:
            return
        self.session.check_methods(list(self.registry.methods.values()), callback=self._on_reasons)

    def _on_reasons(self, reasons: dict[str, list[str]]) -> None:
        self.reasons = reasons
        self._apply_reasons()
        self._update_info()
        self._update_buttons()

    def _apply_reasons(self) -> None:
        grey = QtGui.QBrush(QtGui.QColor("#808080"))
        normal = self.palette().brush(QtGui.QPalette.ColorRole.Text)
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            name = it.data(0, ROLE_METHOD)
            if name is None:
                continue
            why = self.reasons.get(name) or []
            for col in (0, 1):
                it.setForeground(col, grey if why else normal)
            method = self.registry.methods[name]
            base = f"{method.description or name}\nversion {method.version}"
            it.setToolTip(0, base + ("\n\nCannot run here: " + "; ".join(why) if why else ""))

    # ----------------------------------------------------------------------------------------------------------
    def run_current(self) -> Any:
        method = self.current_method()
        if method is None or self.session.scan is None:
            return None
        try:
            entry = self.session.run(method, self.form.values())
        except Exception as exc:  # bad parameters (ParamError) or no problem: tell the user, keep going
            error_box(self, "Cannot run", str(exc))
            return None
        self.ran.emit(entry)
        return entry

    def run_volume(self) -> None:
        """Ask the window to run the selected method on the whole volume (``volume_requested``)."""
        if self.current_method() is not None and self.session.scan is not None:
            self.volume_requested.emit()


def _caps_text(caps: Any) -> str:
    names = {
        "cartesian": "Cartesian data", "noncartesian": "non-Cartesian data", "multicoil": "multi-coil",
        "singlecoil": "single-coil", "needs_weights": "needs trained weights",
        "gives_uncertainty": "gives an uncertainty (std) map", "stochastic": "stochastic (seeded)",
    }
    return "\n".join(v for k, v in names.items() if getattr(caps, k, False))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
