"""A client-side mirror of widget models, fed from a real kernel's IOPub comm messages.

Adapted from the project's recipe ``kernel_driver.py`` (``WidgetMirror``); the kernel
itself is driven by ``tests/kernel/driver.py``, whose messages ``WidgetKernel`` also
feeds here, whichever cell (or none) they belong to.
"""

from __future__ import annotations

import time

from tests.kernel.driver import KernelDriver

WIDGET_TARGET = "jupyter.widget"
PROGRESS_ID = "zart_nb.notebook.progress.RunProgress"  # anywidget's _anywidget_id


class WidgetMirror:
    """models[comm_id] = {"state": {...}, "history": [(t, {changed keys})], "closed": bool}"""

    def __init__(self) -> None:
        self.models: dict[str, dict] = {}

    def feed(self, msg: dict) -> None:
        kind, content, now = msg["msg_type"], msg["content"], time.monotonic()
        if kind == "comm_open" and content.get("target_name") == WIDGET_TARGET:
            state = dict(content.get("data", {}).get("state", {}))
            self.models[content["comm_id"]] = {"state": state, "history": [(now, dict(state))],
                                               "closed": False}
        elif kind == "comm_msg" and content["comm_id"] in self.models:
            data = content.get("data", {})
            if data.get("method") in ("update", "echo_update"):
                model = self.models[content["comm_id"]]
                model["state"].update(data.get("state", {}))
                model["history"].append((now, dict(data.get("state", {}))))
        elif kind == "comm_close" and content.get("comm_id") in self.models:
            self.models[content["comm_id"]]["closed"] = True

    def progress_models(self) -> list[str]:
        return [k for k, m in self.models.items()
                if m["state"].get("_anywidget_id") == PROGRESS_ID]

    def state(self, model_id: str) -> dict:
        return self.models[model_id]["state"]

    def values(self, model_id: str, key: str) -> list:
        return [d[key] for _, d in self.models[model_id]["history"] if key in d]

    def updates(self, model_id: str) -> list[float]:
        """Times of the state updates after the model was opened."""
        return [t for t, _ in self.models[model_id]["history"][1:]]


class WidgetKernel(KernelDriver):
    """A KernelDriver whose every IOPub message also feeds a WidgetMirror."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.widgets = WidgetMirror()

    def _dispatch(self, msg: dict, on_msg) -> None:
        self.widgets.feed(msg)
        super()._dispatch(msg, on_msg)
