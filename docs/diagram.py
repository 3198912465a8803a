"""Draw docs/threads.png: the hardened chat's connections, threads, queues and lock, as
hardened/chat.py runs them. Two connections are drawn in full; every other one is the same, and one
thread, the room's sender, writes to them all.

Run it from the project's folder, with matplotlib installed (pip install matplotlib):

    python docs/diagram.py

It refuses to write a drawing in which a label runs into a box or another label.
"""
import itertools
import pathlib

import matplotlib

matplotlib.use("Agg")  # draw to a file: no window, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUTPUT = pathlib.Path(__file__).resolve().parent / "threads.png"
WIDTH, HEIGHT = 107, 74  # the drawing's own units; the figure keeps their proportions
INCHES = (17.12, 11.84)
DPI = 100
FONT = 10.5
ROW = 22  # drawing units one connection's row is tall
BAND = 18  # drawing units between the two rows, where the room's sender is
LABEL_GAP = 2  # pixels a label keeps from every box, label and arrow
ARROW_SAMPLES = 200  # points checked along each arrow: closer than a label is tall

# One colour per kind of thing, light enough for black text on it.
BROWSER, SOCKET, THREAD, QUEUE, SHARED = "#dbe9f6", "#e8e8e8", "#fde7c8", "#d9f0d3", "#f3e0f0"
LOCK, ERROR, DELIVERY = "#7a1f6e", "#a33333", "#2c6e2c"
FADED = "#8a8a8a"  # what a connection has only while its client is behind


def box(ax, x, y, w, h, text, colour, weight="normal", faded=False):
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3", facecolor=colour,
                           edgecolor=FADED if faded else "#444444", linewidth=1.2,
                           linestyle="--" if faded else "-", alpha=0.5 if faded else 1)
    ax.add_patch(patch)
    words = ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=FONT,
                    fontweight=weight, linespacing=1.35, color="#555555" if faded else "black")
    return patch, words


def arrow(ax, start, end, colour="#222222", dashed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16,
                                 color=colour, linewidth=1.6,
                                 linestyle="--" if dashed else "-"))
    return start, end


def label(ax, x, y, text, colour="#222222", ha="center", va="bottom"):
    return ax.text(x, y, text, ha=ha, va=va, fontsize=FONT - 1, color=colour,
                   fontstyle="italic", linespacing=1.25)


def connection(ax, bottom, person, flipped):
    """One browser's connection: its socket, its two threads, its outbox, and the writer
    it has only while behind. Bob's row is Ada's upside down, so that both face the
    room's sender between them. Returns its boxes, arrows and labels, and y(): where a
    height in the row, counted from the row's edge far from the sender, is drawn."""

    def y(up, tall=0):
        return bottom + ROW - up - tall if flipped else bottom + up

    boxes = [
        box(ax, 0.5, y(4, 14), 11.5, 14, f"{person}'s\nbrowser\n\nnew WebSocket\n(\"…/ws\")",
            BROWSER, weight="bold"),
        box(ax, 16, y(-5.5, 27.5), 6, 27.5, "socket\n(TCP)\n\none per\nbrowser", SOCKET),
        box(ax, 28.5, y(17.5, 4.5), 26, 4.5,
            "reader thread: simple-websocket's\nreads frames, answers pings", THREAD),
        box(ax, 28.5, y(8.5, 6.5), 26, 6.5,
            "handler thread: chat(ws)\njoin(ws), then receive_messages():\n"
            "ws.receive(), check, broadcast();\nat the end, leave(ws)", THREAD, weight="bold"),
        box(ax, 28.5, y(1, 4.5), 20, 4.5,
            "writer thread, only while behind:\nwrite_frames() sends what\n"
            "waits, one write at a time", THREAD, faded=True),
        box(ax, 52, y(1, 4.5), 15, 4.5,
            "outbox: Outbox(list),\nits own lock; frames not\nyet taken by its socket",
            QUEUE),
    ]
    arrows = [
        arrow(ax, (12.7, y(14)), (15.6, y(14))),  # what the browser sends
        arrow(ax, (15.6, y(8)), (12.7, y(8))),    # what it receives
        arrow(ax, (22.4, y(20)), (28.1, y(20))),
        arrow(ax, (41.5, y(17.1)), (41.5, y(15.4))),
        arrow(ax, (51.6, y(3.25)), (48.9, y(3.25)), colour=FADED, dashed=True),
        arrow(ax, (28.1, y(3.25)), (22.4, y(3.25)), colour=FADED, dashed=True),
    ]
    labels = [
        label(ax, 25.25, y(20) + 0.4, "bytes in"),
        label(ax, 42.3, y(16.25), "ws.receive()", ha="left", va="center"),
        label(ax, 25.25, y(3.25) + 0.4, "bytes out", colour=FADED),
    ]
    return boxes, arrows, labels, y


def shared_state(ax):
    """to_send, clients and history, all under clients_lock."""
    ax.add_patch(FancyBboxPatch((77, 11), 28, 52, boxstyle="round,pad=0.5",
                                facecolor="none", edgecolor=LOCK, linewidth=2.2,
                                linestyle="--"))
    title = ax.text(91, 64.2, "guarded by clients_lock\n(one threading.Lock)",
                    ha="center", va="bottom", fontsize=FONT + 0.5, color=LOCK,
                    fontweight="bold")
    boxes = [
        box(ax, 78.5, 12, 10.5, 50, "to_send\n\nframes for\nthe room's\nsender:\n"
            "(frame,\nto whom:\nEVERYONE\nor one ws)\n\nqueue_to_\nsend()\nappends,\n"
            "notifies", SHARED, weight="bold"),
        box(ax, 92, 39.5, 12, 22.5, "clients\n\n{ each open ws:\nits outbox }\n\n"
            "join() adds,\nleave() removes;\nthe room's\nsender copies it", SHARED,
            weight="bold"),
        box(ax, 92, 12, 12, 22.5, "history\n\nthe last 10\nframes: the\n"
            "room's sender\nadds each\nbroadcast;\njoin() sends\nthem to a\nnewcomer",
            SHARED, weight="bold"),
    ]
    return boxes, title


def room_sender(ax, middle):
    """The one thread that writes to every client, between the two rows: a bold heading
    over what it does. Returns its box twice, once with each of its texts."""
    patch, _ = box(ax, 28.5, middle - 6, 38.5, 12, "", THREAD)
    heading = ax.text(47.75, middle + 5.2, "the room's sender: send_to_room()", ha="center",
                      va="top", fontsize=FONT, fontweight="bold")
    words = ax.text(47.75, middle - 1,
                    "one thread for the whole room. Under clients_lock, it takes\n"
                    "the oldest frames of to_send (one write's worth), adds the\n"
                    "broadcast ones to history, copies clients. Then, outside the\n"
                    "lock, send_frames() for each client: one non-blocking write\n"
                    "(send_now) if nothing waits in its outbox; else, or if the\n"
                    "socket took only part, into the outbox, and a writer starts",
                    ha="center", va="center", fontsize=FONT, linespacing=1.35)
    return [(patch, heading), (patch, words)]


def clashes(fig, boxes, arrows, labels):
    """What runs into what, in the drawn picture: a box's text out of its box, a label on
    a box, on another label or on an arrow. Empty in a clean drawing."""
    renderer = fig.canvas.get_renderer()

    def extent(artist, gap=0):
        return artist.get_window_extent(renderer).padded(gap)

    found = [f"{words.get_text()!r} spills out of its box" for patch, words in boxes
             if not extent(patch).contains(*extent(words).min)
             or not extent(patch).contains(*extent(words).max)]
    spaced = [(text, extent(text, LABEL_GAP)) for text in labels]
    found += [f"{a.get_text()!r} runs into {b.get_text()!r}"
              for (a, one), (b, other) in itertools.combinations(spaced, 2)
              if one.overlaps(other)]
    found += [f"{text.get_text()!r} runs into the box of {words.get_text()!r}"
              for text, room in spaced for patch, words in boxes
              if room.overlaps(extent(patch))]
    to_pixels = fig.axes[0].transData.transform
    for start, end in arrows:
        (x0, y0), (x1, y1) = to_pixels(start), to_pixels(end)
        points = [(x0 + (x1 - x0) * n / ARROW_SAMPLES, y0 + (y1 - y0) * n / ARROW_SAMPLES)
                  for n in range(ARROW_SAMPLES + 1)]
        found += [f"{text.get_text()!r} sits on the arrow from {start} to {end}"
                  for text, room in spaced if any(room.contains(*p) for p in points)]
    return found


def main():
    fig, ax = plt.subplots(figsize=INCHES, dpi=DPI)
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")
    ax.text(0.5, 73.5, "How hardened/chat.py serves the room: two threads per connection, one sender"
            " for the whole room, one lock for what they share", fontsize=FONT + 4,
            fontweight="bold", va="top")

    boxes, lock_title = shared_state(ax)
    arrows, labels = [], [lock_title]
    bob_bottom = 6
    middle = bob_bottom + ROW + BAND / 2  # of the band between the rows
    rows = {}
    for bottom, person, flipped in ((bob_bottom + ROW + BAND, "Ada", False),
                                    (bob_bottom, "Bob", True)):
        own_boxes, own_arrows, own_labels, rows[person] = connection(ax, bottom, person,
                                                                     flipped)
        boxes += own_boxes
        arrows += own_arrows
        labels += own_labels
    labels.append(ax.text(0.5, 0.5, "… and the same for every other browser: its own"
                          " socket, reader, handler and outbox, and a writer only while it"
                          " is behind; the room's sender, one thread, writes to them all.",
                          fontsize=FONT, fontstyle="italic"))

    boxes += room_sender(ax, middle)
    arrows.append(arrow(ax, (78.1, middle), (67.4, middle), colour=LOCK))
    labels.append(label(ax, 72.75, middle + 0.4, "takes\nthe oldest", colour=LOCK))
    for person, y in rows.items():
        # Each handler hands its frames to the room's sender: every message, and an
        # error for the sender alone, in order after what it sent before.
        above, below = ("bottom", "top") if person == "Ada" else ("top", "bottom")
        arrows += [arrow(ax, (54.9, y(13)), (78.1, y(13))),
                   arrow(ax, (54.9, y(10)), (78.1, y(10)), colour=ERROR, dashed=True),
                   # The room's sender writes a client's frames at once, or, while it is
                   # behind, into its outbox.
                   arrow(ax, (28.1, y(-4)), (22.4, y(-4)), colour=DELIVERY),
                   arrow(ax, (59, y(-2.6)), (59, y(0.6)), colour=DELIVERY)]
        labels += [label(ax, 55.5, y(13.4), "broadcast() → deliver() →\n"
                         "queue_to_send(frame, EVERYONE)", ha="left", va=above),
                   label(ax, 55.5, y(9.6), "an error: queue_to_send(reply, ws),\n"
                         "to the sender alone, in order", colour=ERROR, ha="left", va=below),
                   label(ax, 25.25, y(-4) + 0.4, "bytes out", colour=DELIVERY),
                   label(ax, 59.6, (y(-2.6) + y(0.6)) / 2, "if behind", colour=DELIVERY,
                         ha="left", va="center")]

    found = clashes(fig, boxes, arrows, labels)
    if found:
        raise SystemExit("Not drawn, because:\n" + "\n".join(found))
    fig.savefig(OUTPUT, bbox_inches="tight", pad_inches=0.2, facecolor="white")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
