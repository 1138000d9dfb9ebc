"""Where user code calls zart_nb, and tracebacks that show the user's frames only.

A step, a child or a cell fails in the user's code, but the exception passes through
zart_nb's own frames (the engine that called the step, the worker that ran the child).
Those frames say nothing to the user: tracebacks shown or stored leave them out.
"""

from __future__ import annotations

import os
import sys
import traceback
import types

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def ours(code: types.CodeType) -> bool:
    """True for code of zart_nb itself."""
    return code.co_filename.startswith(PACKAGE_DIR)


_site_depth = [2]  # how deep call_site found the user's frame last time


def call_site() -> tuple[str, int]:
    """(file, line) of the innermost user code calling into zart_nb (every step asks).

    Calls come in by a few paths of fixed depth, so the depth found last time is tried
    first: ``sys._getframe(depth)`` reaches that frame without creating a frame object
    for each of ours on the way, as walking ``f_back`` does (about 2 us of the 12 a
    replayed step took). The guess holds when that frame is the user's and the one
    it called is ours; a user frame further in (user code that zart_nb called back,
    calling a step itself) is then passed over, and the site names the outer call.
    """
    depth = _site_depth[0]
    try:
        frame = sys._getframe(depth)
        if not ours(frame.f_code) and ours(sys._getframe(depth - 1).f_code):
            return (frame.f_code.co_filename, frame.f_lineno)
    except ValueError:  # the stack is shallower than that now
        pass
    walked, hops = _outward(sys._getframe(1))
    if walked is None:
        return ("<unknown>", 0)
    _site_depth[0] = 1 + hops
    return (walked.f_code.co_filename, walked.f_lineno)


def _outward(frame: types.FrameType | None) -> tuple[types.FrameType | None, int]:
    """The first frame from ``frame`` outwards that is not zart_nb's (None: none is), and
    how many frames out it is."""
    hops = 0
    while frame is not None and ours(frame.f_code):
        frame = frame.f_back
        hops += 1
    return frame, hops


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` of zart_nb's (called from the
    caller of this function) point at the user's line."""
    return 1 + _outward(sys._getframe(1))[1]


def users_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The chain ``tb`` without zart_nb's frames (a new chain; ``tb`` is left as it is)."""
    kept = []
    while tb is not None:
        if not ours(tb.tb_frame.f_code):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for item in reversed(kept):
        chain = types.TracebackType(chain, item.tb_frame, item.tb_lasti, item.tb_lineno)
    return chain


def without_library_frames(exc: BaseException) -> BaseException:
    """``exc`` (and its causes) with zart_nb's frames cut out of the traceback, to be
    re-raised to the user; a traceback made only of our frames is kept as it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = users_frames(current.__traceback__) or current.__traceback__
        current = current.__cause__ or current.__context__
    return exc


def format_users_traceback(error: BaseException) -> str:
    """The traceback text a user reads (stored with a failed step): their frames only."""
    tb = users_frames(error.__traceback__) or error.__traceback__
    return "".join(traceback.format_exception(type(error), error, tb))
