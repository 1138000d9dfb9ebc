"""A cell's outputs, recorded while they are shown live, and shown again on restore.

``Recorder`` tees ``sys.stdout``/``sys.stderr`` and wraps the shell's display
publisher for the duration of a cell: everything still reaches the front-end as
usual, and a copy is kept as plain records (stream text, display bundles with their
metadata, clear_output). ``replay`` publishes the records again. Widget views are
replayed as their text fallback: the widget models died with the kernel that made them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class _Tee:
    """A text stream that forwards to ``target`` and records what was written."""

    def __init__(self, target: TextIO, name: str, recorder: Recorder) -> None:
        self._target = target
        self._name = name
        self._recorder = recorder

    def write(self, text: str) -> int:
        if text:
            self._recorder.stream(self._name, text)
        written: int = self._target.write(text)
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target, attr)


class Recorder:
    """Records the outputs of one cell while they are published."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.records: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._saved: tuple[Any, ...] | None = None

    def stream(self, name: str, text: str) -> None:
        with self._lock:
            if self.records and self.records[-1][0] == "stream" and self.records[-1][1] == name:
                self.records[-1] = ("stream", name, self.records[-1][2] + text)
            else:
                self.records.append(("stream", name, text))

    def __enter__(self) -> Recorder:
        pub = self.shell.display_pub
        original_publish, original_clear = pub.publish, pub.clear_output

        def publish(data: dict[str, Any], metadata: dict[str, Any] | None = None, *args: Any,
                    **kwargs: Any) -> Any:
            with self._lock:
                self.records.append(("display", dict(data), dict(metadata or {}),
                                     dict(kwargs.get("transient") or {}),
                                     bool(kwargs.get("update", False))))
            return original_publish(data, metadata, *args, **kwargs)

        def clear_output(wait: bool = False) -> Any:
            with self._lock:
                self.records.append(("clear", bool(wait)))
            return original_clear(wait)

        self._saved = (sys.stdout, sys.stderr, "publish" in vars(pub), "clear_output" in vars(pub))
        pub.publish = publish
        pub.clear_output = clear_output
        sys.stdout = _Tee(sys.stdout, "stdout", self)
        sys.stderr = _Tee(sys.stderr, "stderr", self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None  # entered
        stdout, stderr, had_publish, had_clear = self._saved
        pub = self.shell.display_pub
        for attr, had in (("publish", had_publish), ("clear_output", had_clear)):
            if not had:
                with contextlib.suppress(AttributeError):
                    delattr(pub, attr)
        if isinstance(sys.stdout, _Tee):
            sys.stdout = stdout
        if isinstance(sys.stderr, _Tee):
            sys.stderr = stderr


def replay(shell: Any, records: list[tuple[Any, ...]]) -> None:
    """Publish recorded outputs again, in order."""
    pub = shell.display_pub
    for record in records:
        kind = record[0]
        if kind == "stream":
            stream = sys.stdout if record[1] == "stdout" else sys.stderr
            stream.write(record[2])
            stream.flush()
        elif kind == "display":
            _, data, metadata, transient, update = record
            if WIDGET_VIEW in data:
                data = {k: v for k, v in data.items() if k != WIDGET_VIEW}
                if not data:
                    continue
            kwargs: dict[str, Any] = {}
            if transient:
                kwargs["transient"] = transient
            if update:
                kwargs["update"] = True
            try:
                pub.publish(data, metadata, **kwargs)
            except TypeError:  # a plain IPython DisplayPublisher without transient/update
                pub.publish(data, metadata)
        elif kind == "clear":
            pub.clear_output(record[1])
