"""Draw docs/threads.png: the chat's connections, threads, outboxes and lock, as app.py
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
WIDTH, HEIGHT = 100, 67  # the drawing's own units; the figure keeps their proportions
INCHES = (16, 10.72)
DPI = 100
FONT = 10.5
ROW = 31  # drawing units from one connection's row to the next
LABEL_GAP = 2  # pixels a label keeps from every box, label and arrow
ARROW_SAMPLES = 200  # points checked along each arrow: closer than a label is tall

# One colour per kind of thing, light enough for black text on it.
BROWSER, SOCKET, THREAD = "#dbe9f6", "#e8e8e8", "#fde7c8"
QUEUE, SHARED = "#d9f0d3", "#f3e0f0"
LOCK, ERROR, DELIVERY = "#7a1f6e", "#a33333", "#2c6e2c"


def box(ax, x, y, w, h, text, colour, weight="normal", dashed=False):
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3", facecolor=colour,
                           edgecolor="#444444", linewidth=1.6 if dashed else 1.2,
                           linestyle="--" if dashed else "-")
    ax.add_patch(patch)
    words = ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=FONT,
                    fontweight=weight, linespacing=1.35)
    return patch, words


def arrow(ax, start, end, colour="#222222", dashed=False):
    return path(ax, [start, end], colour, dashed)[0]


def path(ax, points, colour="#222222", dashed=False):
    """An arrow through the points, straight from each to the next, its head at the last.
    Returns its straight pieces, each as (start, end)."""
    pieces = list(zip(points, points[1:]))
    for n, (start, end) in enumerate(pieces):
        last = n == len(pieces) - 1
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if last else "-",
                                     mutation_scale=16, color=colour, linewidth=1.6,
                                     linestyle="--" if dashed else "-",
                                     shrinkA=0 if n else 2, shrinkB=2 if last else 0))
    return pieces


def label(ax, x, y, text, colour="#222222", ha="center", va="bottom"):
    return ax.text(x, y, text, ha=ha, va=va, fontsize=FONT - 1, color=colour,
                   fontstyle="italic", linespacing=1.25)


def connection(ax, bottom, person):
    """One browser's connection: its socket, its two threads, the writer it has while it
    is behind, and its outbox. Returns its boxes, arrows and labels, where its broadcast()
    arrow leaves and where the frames delivered to it run to its socket."""
    lane = bottom + 0.8  # what queue_frames() sends at once runs along here to the socket
    boxes = [
        box(ax, 0.5, bottom + 6, 11.5, 15,
            f"{person}'s\nbrowser\n\nnew WebSocket\n(\"…/ws\")", BROWSER, weight="bold"),
        box(ax, 16, bottom, 6, 27, "socket\n(TCP)\n\none per\nbrowser", SOCKET),
        box(ax, 28.5, bottom + 23, 26, 3.8,
            "reader thread: simple-websocket's\nreads frames, answers pings", THREAD),
        box(ax, 28.5, bottom + 12, 26, 7.8,
            "handler thread: chat(ws)\njoin(ws), then receive_messages():\n"
            "messages_arrived(), check,\nbroadcast() them together;\nat the end, leave(ws)",
            THREAD, weight="bold"),
        box(ax, 28.5, bottom + 3.8, 21.5, 5,
            "writer thread, only while behind:\nwrite_frames() sends what waits,\n"
            "one write at a time, then ends", THREAD, dashed=True),
        box(ax, 55.5, bottom + 3.8, 14, 5, "outbox: a list,\nonly what the socket\n"
            "did not take", QUEUE),
    ]
    arrows = [
        arrow(ax, (12.7, bottom + 17), (15.6, bottom + 17)),  # what the browser sends
        arrow(ax, (15.6, bottom + 9), (12.7, bottom + 9)),    # what it receives
        arrow(ax, (22.4, bottom + 24.9), (28.1, bottom + 24.9)),
        arrow(ax, (41.5, bottom + 22.4), (41.5, bottom + 20.4)),
        arrow(ax, (55.1, bottom + 6.3), (50.4, bottom + 6.3)),
        arrow(ax, (28.1, bottom + 6.3), (22.4, bottom + 6.3)),
        # What the socket did not take at once waits in the outbox, for the writer.
        arrow(ax, (64, lane), (64, bottom + 3.3), colour=DELIVERY),
        # An error goes back to the sender alone, by the same way as every delivery.
        *path(ax, [(55.1, bottom + 13.4), (71, bottom + 12.4), (71, lane)], colour=ERROR,
              dashed=True),
    ]
    labels = [
        label(ax, 25.25, bottom + 25.3, "bytes in"),
        label(ax, 42.3, bottom + 21.4, "ws.receive()", ha="left", va="center"),
        label(ax, 52.75, bottom + 6.7, "frames"),
        label(ax, 25.25, bottom + 6.7, "bytes out"),
        label(ax, 40, lane + 0.4, "send_now(): at once, if the socket takes it",
              colour=DELIVERY),
        label(ax, 64.5, lane + 1.1, "the rest", colour=DELIVERY, ha="left", va="center"),
        label(ax, 62.5, bottom + 10.8, "an error: reply(),\nto its sender only",
              colour=ERROR, va="center"),
    ]
    return boxes, arrows, labels, (54.9, bottom + 18.5), (22.4, lane)


def shared_state(ax):
    """clients, deliver() and history, all under clients_lock."""
    ax.add_patch(FancyBboxPatch((74.5, 15), 25, 44.5, boxstyle="round,pad=0.5",
                                facecolor="none", edgecolor=LOCK, linewidth=2.2,
                                linestyle="--"))
    title = ax.text(87, 60.7, "guarded by clients_lock\n(one threading.Lock)", ha="center",
                    va="bottom", fontsize=FONT + 0.5, color=LOCK, fontweight="bold")
    boxes = [
        box(ax, 76, 51, 22, 8, "clients\n{ each open ws: its outbox }\n"
            "join() adds, leave() removes", SHARED, weight="bold"),
        box(ax, 76, 30, 22, 17.5, "deliver(*texts)\nencodes each frame once,\n"
            "history.extend(them),\nqueue_frames() them to\nevery client", SHARED,
            weight="bold"),
        box(ax, 76, 16.5, 22, 9.5, "history\nthe last 10 frames;\njoin() sends them\n"
            "to a newcomer", SHARED, weight="bold"),
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
    ax.text(0.5, 66.5, "How app.py serves the room: two threads per connection (a third"
            " only while it is behind), one lock for what they share", fontsize=FONT + 4,
            fontweight="bold", va="top")

    boxes, lock_title = shared_state(ax)
    arrows, labels = [], [lock_title]
    for bottom, person in ((4 + ROW, "Ada"), (4, "Bob")):
        own_boxes, own_arrows, own_labels, sends, socket = connection(ax, bottom, person)
        boxes += own_boxes
        arrows += own_arrows
        labels += own_labels
        if person == "Ada":
            ada_sends, ada_socket = sends, socket
        else:
            bob_sends, bob_socket = sends, socket
    labels.append(ax.text(0.5, 0.5, "… and the same for every other browser: its own"
                          " socket, reader, handler and outbox, and a writer while it is"
                          " behind.", fontsize=FONT, fontstyle="italic"))

    # Each handler's broadcast() calls deliver(), which sends the frames to every client:
    # at once along its socket's lane, the rest into its outbox. Top to bottom along
    # deliver's edge, so that no two arrows cross: Ada's message in, Ada's frames out,
    # Bob's message in, Bob's frames out.
    arrows += [arrow(ax, ada_sends, (75.6, 47)),
               arrow(ax, (75.6, ada_socket[1]), ada_socket, colour=DELIVERY),
               arrow(ax, bob_sends, (75.6, 33.5)),
               *path(ax, [(75.6, 31), (73, bob_socket[1]), bob_socket], colour=DELIVERY)]
    labels += [label(ax, 55.5, ada_sends[1] + 0.4, "broadcast()", ha="left"),
               label(ax, 55.5, bob_sends[1] - 0.4, "broadcast()", ha="left", va="top"),
               label(ax, 75, 4, "queue_frames(), for each client:\nat once if nothing"
                     " waits\nand its socket takes them;\nthe rest wait in its outbox;"
                     "\nif it was empty, start_writer()", colour=DELIVERY, ha="left")]

    found = clashes(fig, boxes, arrows, labels)
    if found:
        raise SystemExit("Not drawn, because:\n" + "\n".join(found))
    fig.savefig(OUTPUT, bbox_inches="tight", pad_inches=0.2, facecolor="white")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
