"""Draw docs/threads.png: the chat's connections, threads, queues and lock, as app.py
runs them. Two connections are drawn in full; every other one is the same.

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
WIDTH, HEIGHT = 100, 63  # the drawing's own units; the figure keeps their proportions
INCHES = (16, 10.08)
DPI = 100
FONT = 10.5
ROW = 29  # drawing units from one connection's row to the next
LABEL_GAP = 2  # pixels a label keeps from every box, label and arrow
ARROW_SAMPLES = 200  # points checked along each arrow: closer than a label is tall

# One colour per kind of thing, light enough for black text on it.
BROWSER, SOCKET, THREAD, QUEUE, SHARED = "#dbe9f6", "#e8e8e8", "#fde7c8", "#d9f0d3", "#f3e0f0"
LOCK, ERROR, DELIVERY = "#7a1f6e", "#a33333", "#2c6e2c"


def box(ax, x, y, w, h, text, colour, weight="normal"):
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3", facecolor=colour,
                           edgecolor="#444444", linewidth=1.2)
    ax.add_patch(patch)
    words = ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=FONT,
                    fontweight=weight, linespacing=1.35)
    return patch, words


def arrow(ax, start, end, colour="#222222", dashed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16,
                                 color=colour, linewidth=1.6,
                                 linestyle="--" if dashed else "-"))
    return start, end


def label(ax, x, y, text, colour="#222222", ha="center", va="bottom"):
    return ax.text(x, y, text, ha=ha, va=va, fontsize=FONT - 1, color=colour,
                   fontstyle="italic", linespacing=1.25)


def connection(ax, bottom, person):
    """One browser's connection: its socket, its three threads and its outbox. Returns
    its boxes, arrows and labels, where its broadcast() arrow leaves and where deliveries
    to it arrive."""
    boxes = [
        box(ax, 0.5, bottom + 5, 11.5, 15, f"{person}'s\nbrowser\n\nnew WebSocket\n(\"…/ws\")",
            BROWSER, weight="bold"),
        box(ax, 16, bottom + 1, 6, 23, "socket\n(TCP)\n\none per\nbrowser", SOCKET),
        box(ax, 28.5, bottom + 19.5, 26, 4.5,
            "reader thread: simple-websocket's\nreads frames, answers pings", THREAD),
        box(ax, 28.5, bottom + 9.5, 26, 6.5,
            "handler thread: chat(ws)\njoin(ws), then receive_messages():\n"
            "ws.receive(), check, broadcast();\nat the end, leave(ws)", THREAD, weight="bold"),
        box(ax, 28.5, bottom + 1, 22, 5,
            "writer thread: write_frames()\nsends all that waits, in one write", THREAD),
        box(ax, 55.5, bottom + 1, 14, 5, "outbox\nqueue.SimpleQueue()", QUEUE),
    ]
    arrows = [
        arrow(ax, (12.7, bottom + 16), (15.6, bottom + 16)),  # what the browser sends
        arrow(ax, (15.6, bottom + 8), (12.7, bottom + 8)),    # what it receives
        arrow(ax, (22.4, bottom + 22), (28.1, bottom + 22)),
        arrow(ax, (41.5, bottom + 19.1), (41.5, bottom + 16.5)),
        arrow(ax, (55.1, bottom + 3.5), (50.9, bottom + 3.5)),
        arrow(ax, (28.1, bottom + 3.5), (22.4, bottom + 3.5)),
        # An error goes back to the sender alone: into its own outbox, never to deliver().
        arrow(ax, (53, bottom + 9.1), (58, bottom + 6.4), colour=ERROR, dashed=True),
    ]
    labels = [
        label(ax, 25.25, bottom + 22.4, "bytes in"),
        label(ax, 42.3, bottom + 17.8, "ws.receive()", ha="left", va="center"),
        label(ax, 53, bottom + 3.9, "get()"),
        label(ax, 25.25, bottom + 3.9, "bytes out"),
        label(ax, 52.2, bottom + 7.75, "an error: queue_frame() to its own outbox only",
              colour=ERROR, ha="right", va="center"),
    ]
    return boxes, arrows, labels, (54.9, bottom + 13.5), (69.9, bottom + 3.5)


def shared_state(ax):
    """clients, deliver() and history, all under clients_lock."""
    ax.add_patch(FancyBboxPatch((74.5, 13.5), 25, 40, boxstyle="round,pad=0.5",
                                facecolor="none", edgecolor=LOCK, linewidth=2.2,
                                linestyle="--"))
    title = ax.text(87, 54.7, "guarded by clients_lock\n(one threading.Lock)", ha="center",
                    va="bottom", fontsize=FONT + 0.5, color=LOCK, fontweight="bold")
    boxes = [
        box(ax, 76, 43, 22, 9, "clients\n{ each open ws: its outbox }\n"
            "join() adds, leave() removes", SHARED, weight="bold"),
        box(ax, 76, 27.5, 22, 12.5, "deliver(text)\nencodes the frame once,\n"
            "history.append(frame),\nqueue_frame() to\nevery outbox", SHARED, weight="bold"),
        box(ax, 76, 15, 22, 9.5, "history\nthe last 10 frames;\njoin() copies them\n"
            "into a newcomer's outbox", SHARED, weight="bold"),
    ]
    return boxes, title


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
    ax.text(0.5, 62.5, "How app.py serves the room: three threads per connection, one lock"
            " for what they share", fontsize=FONT + 4, fontweight="bold", va="top")

    boxes, lock_title = shared_state(ax)
    arrows, labels = [], [lock_title]
    for bottom, person in ((4 + ROW, "Ada"), (4, "Bob")):
        own_boxes, own_arrows, own_labels, sends, outbox = connection(ax, bottom, person)
        boxes += own_boxes
        arrows += own_arrows
        labels += own_labels
        if person == "Ada":
            ada_sends, ada_outbox = sends, outbox
        else:
            bob_sends, bob_outbox = sends, outbox
    labels.append(ax.text(0.5, 0.5, "… and the same for every other browser: its own"
                          " socket, reader, handler, writer and outbox.", fontsize=FONT,
                          fontstyle="italic"))

    # Each handler's broadcast() calls deliver(), which puts one frame in every outbox.
    # Top to bottom along deliver's edge, so that no two arrows cross: Ada's message in,
    # Ada's frame out, Bob's message in, Bob's frame out.
    arrows += [arrow(ax, ada_sends, (75.6, 38)),
               arrow(ax, (75.6, 35), ada_outbox, colour=DELIVERY),
               arrow(ax, bob_sends, (75.6, 32)),
               arrow(ax, (75.6, 29), bob_outbox, colour=DELIVERY)]
    labels += [label(ax, 55.5, ada_sends[1] + 0.4, "broadcast()", ha="left"),
               label(ax, 55.5, bob_sends[1] - 0.4, "broadcast()", ha="left", va="top"),
               label(ax, 71, 1, "queue_frame():\none frame,\nto every outbox",
                     colour=DELIVERY, ha="left")]

    found = clashes(fig, boxes, arrows, labels)
    if found:
        raise SystemExit("Not drawn, because:\n" + "\n".join(found))
    fig.savefig(OUTPUT, bbox_inches="tight", pad_inches=0.2, facecolor="white")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
