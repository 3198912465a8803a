"""Draw the threads diagrams: each browser's connection, its threads and its outbox, and
what the threads share under one lock, as one chat's code runs them. Each drawing shows
the names of one file, which its title names:

- docs/threads.png: workshop/steps/05-writer/app.py, where the tutorial and the teacher's
  guide first show it (step 05: a writer thread and an outbox per connection);
- docs/threads-card.png: app.py, the card's chat, that step 15 ends at (the outbox is
  bounded, the history and the clean close are in);
- docs/threads-hardened.png: hardened/chat.py, where each app has a room of its own, whose
  one sender writes to all of it, taking each sending address's frames in turn.

Two connections are drawn in full; every other one is the same. Run it from the project's
folder, with matplotlib installed (pip install matplotlib):

    python docs/diagram.py

It refuses to write a drawing in which a label runs into a box or another label.
tests/test_diagram.py checks that every name of code a drawing shows is in its file.
"""
import itertools
import pathlib
from collections import namedtuple

import matplotlib

matplotlib.use("Agg")  # draw to a file: no window, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

DOCS = pathlib.Path(__file__).resolve().parent
WIDTH, HEIGHT = 107, 74  # the drawing's own units; the figure keeps their proportions
INCHES = (17.12, 11.84)
DPI = 100
FONT = 10.5
ROW = 22  # drawing units one connection's row is tall
BAND = 18  # drawing units between the two rows
LABEL_GAP = 2  # pixels a label keeps from every box, label and arrow
ARROW_SAMPLES = 200  # points checked along each arrow: closer than a label is tall

# One colour per kind of thing, light enough for black text on it.
BROWSER, SOCKET, THREAD, QUEUE, SHARED = "#dbe9f6", "#e8e8e8", "#fde7c8", "#d9f0d3", "#f3e0f0"
NOTE = "#ffffff"  # what a function does, in the thread that calls it
LOCK, ERROR, DELIVERY = "#7a1f6e", "#a33333", "#2c6e2c"
FADED = "#8a8a8a"  # what a connection has only while its client is behind


def box(ax, x, y, w, h, text, colour, weight="normal", faded=False, dashed=False):
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3", facecolor=colour,
                           edgecolor=FADED if faded else "#444444", linewidth=1.2,
                           linestyle="--" if faded or dashed else "-",
                           alpha=0.5 if faded else 1)
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


def canvas(title):
    fig, ax = plt.subplots(figsize=INCHES, dpi=DPI)
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")
    ax.text(0.5, 73.5, title, fontsize=FONT + 4, fontweight="bold", va="top")
    return fig, ax


CARD_LOCK = "guarded by clients_lock\n(one threading.Lock)"


def lock_frame(ax, title=CARD_LOCK):
    """The dashed frame of what the lock guards, and its title."""
    ax.add_patch(FancyBboxPatch((77, 11), 28, 52, boxstyle="round,pad=0.5",
                                facecolor="none", edgecolor=LOCK, linewidth=2.2,
                                linestyle="--"))
    return ax.text(91, 64.2, title, ha="center", va="bottom", fontsize=FONT + 0.5,
                   color=LOCK, fontweight="bold")


# What differs between step 05's chat and the card's, app.py at step 15.
Card = namedtuple("Card", "title handler outbox shared note errors footer")

STEP_05 = Card(
    title="How step 05's app.py (workshop/steps/05-writer) serves the room: three threads"
          " per connection, one lock for the set they share",
    handler="handler thread: chat(ws)\njoin(client), then receive_messages():\n"
            "ws.receive(), then broadcast(frame);\nat the end, leave(client), finish(client)",
    outbox="outbox: queue.Queue(),\nno limit yet: frames\nnot yet sent",
    shared=[((78.5, 12, 25, 50),
             "clients\n\na set: one (ws, outbox)\nfor each open connection\n\n"
             "join() adds its client,\nleave() removes it;\nbroadcast() goes through\n"
             "them all, with send_to()")],
    note=("broadcast(frame), in the sender's handler thread",
          "under clients_lock, for each client in clients: send_to(client, frame),\n"
          "which puts the frame in that client's outbox (put_nowait).\n"
          "It never waits for a browser: the writers do the sending.\n"
          "finish(client) puts None in the outbox: its writer ends"),
    errors=False,
    footer="… and the same for every other browser: its own socket, reader, handler, writer"
           " and outbox; broadcast() puts each frame in every outbox.",
)

CARD = Card(
    title="How app.py, the card's chat (step 15), serves the room: three threads per"
          " connection, one lock for what they share",
    handler="handler thread: chat(ws): join(client),\nreceive_messages(): ws.receive(),\n"
            "parse_message(), broadcast();\nat the end, leave(client), finish(client)",
    outbox="outbox: queue.Queue(\nmaxsize=OUTBOX_SIZE);\nfull: hang_up(ws)",
    shared=[((78.5, 39.5, 25, 22.5),
             "clients\n\na set: one (ws, outbox)\nfor each open connection\n\n"
             "join() adds its client,\nleave() removes it"),
            ((78.5, 12, 25, 22.5),
             "history\n\nthe last HISTORY_SIZE (10)\nframes: broadcast() adds\n"
             "each; join() puts them in\na newcomer's outbox")],
    note=("broadcast(message), in the sender's handler thread",
          "encodes the frame once; under clients_lock, adds it to history and,\n"
          "for each client in clients, send_to(client, frame): put_nowait in its\n"
          "outbox, never waiting for a browser. A full outbox: hang_up(ws) shuts\n"
          "its socket. finish(client) waits for ws.thread, then hang_up(ws)"),
    errors=True,
    footer="… and the same for every other browser: its own socket, reader, handler, writer"
           " and outbox; broadcast() puts each frame in every outbox.",
)


def card_connection(ax, bottom, person, flipped, card):
    """One browser's connection in the card's chat: its socket, the library's reader, the
    handler, the writer and its outbox. Bob's row is Ada's upside down, so that both
    face the band between them. Returns its boxes, arrows and labels, and y(): where a
    height in the row, counted from the row's edge far from the band, is drawn."""

    def y(up, tall=0):
        return bottom + ROW - up - tall if flipped else bottom + up

    boxes = [
        box(ax, 0.5, y(4, 14), 11.5, 14, f"{person}'s\nbrowser\n\nnew WebSocket\n(\"…/ws\")",
            BROWSER, weight="bold"),
        box(ax, 16, y(-2.5, 24.5), 6, 24.5, "socket\n(TCP)\n\none per\nbrowser", SOCKET),
        box(ax, 28.5, y(17.5, 4.5), 28, 4.5,
            "reader thread: simple-websocket's\nreads frames, answers pings", THREAD),
        box(ax, 28.5, y(8.5, 6.5), 28, 6.5, card.handler, THREAD, weight="bold"),
        box(ax, 28.5, y(1, 4.5), 19.5, 4.5,
            "writer thread: write_frames()\nthe only one that sends on\n"
            "this socket: ws.send(frame)", THREAD),
        box(ax, 51, y(1, 4.5), 15, 4.5, card.outbox, QUEUE),
    ]
    arrows = [
        arrow(ax, (12.7, y(14)), (15.6, y(14))),  # what the browser sends
        arrow(ax, (15.6, y(8)), (12.7, y(8))),    # what it receives
        arrow(ax, (22.4, y(20)), (28.1, y(20))),
        arrow(ax, (42.5, y(17.1)), (42.5, y(15.4))),
        arrow(ax, (50.6, y(3.25)), (48.4, y(3.25))),
        arrow(ax, (28.1, y(3.25)), (22.4, y(3.25))),
        # Every message goes to the lock's side; every frame comes back to each outbox.
        arrow(ax, (56.9, y(12.5)), (78.1, y(12.5))),
        arrow(ax, (78.1, y(3.25)), (66.4, y(3.25)), colour=DELIVERY),
    ]
    above, below = ("bottom", "top") if person == "Ada" else ("top", "bottom")
    labels = [
        label(ax, 25.25, y(20) + 0.4, "bytes in"),
        label(ax, 43.3, y(16.25), "ws.receive()", ha="left", va="center"),
        label(ax, 25.25, y(3.25) + 0.4, "bytes out"),
        label(ax, 57.5, y(12.9), "broadcast(): every message", ha="left", va=above),
        label(ax, 67, y(3.65), "send_to()", colour=DELIVERY, ha="left", va=above),
    ]
    if card.errors:
        # A refusal goes back to its sender alone, in its turn, through its own outbox.
        arrows.append(arrow(ax, (56.9, y(9.5)), (61, y(5.9)), colour=ERROR, dashed=True))
        labels.append(label(ax, 61.5, y(8), "an error: send_to(client, …),\n"
                            "to the sender alone", colour=ERROR, ha="left", va="center"))
    return boxes, arrows, labels


def draw_card(card):
    fig, ax = canvas(card.title)
    boxes = [box(ax, *place, text, SHARED, weight="bold") for place, text in card.shared]
    arrows, labels = [], [lock_frame(ax)]
    bob_bottom = 6
    middle = bob_bottom + ROW + BAND / 2  # of the band between the rows
    for bottom, person, flipped in ((bob_bottom + ROW + BAND, "Ada", False),
                                    (bob_bottom, "Bob", True)):
        own_boxes, own_arrows, own_labels = card_connection(ax, bottom, person, flipped,
                                                            card)
        boxes += own_boxes
        arrows += own_arrows
        labels += own_labels
    heading, words = card.note
    patch, _ = box(ax, 28.5, middle - 6, 45, 12, "", NOTE, dashed=True)
    boxes += [(patch, ax.text(51, middle + 5.2, heading, ha="center", va="top",
                              fontsize=FONT, fontweight="bold")),
              (patch, ax.text(51, middle - 1, words, ha="center", va="center",
                              fontsize=FONT, linespacing=1.35))]
    labels.append(ax.text(0.5, 0.5, card.footer, fontsize=FONT, fontstyle="italic"))
    return fig, boxes, arrows, labels


def hardened_connection(ax, bottom, person, flipped):
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
            "handler thread: chat(ws), in\nroom_of(current_app): join(room, ws),\n"
            "receive_messages(): ws.receive(),\ncheck, broadcast(); leave(room, ws)",
            THREAD, weight="bold"),
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


def hardened_shared_state(ax):
    """The app's room: to_send, clients and history, all under room.lock."""
    title = lock_frame(ax, "one Room per app: room_of(current_app),\n"
                           "guarded by room.lock (one threading.Lock)")
    boxes = [
        box(ax, 78.5, 12, 10.5, 50, "to_send\n\neach sending\naddress's\nframes, in a\n"
            "line of its own:\n(frame,\nto whom:\nEVERYONE\nor one ws,\nwhen)\n\n"
            "queue_to_\nsend() adds\nto its line,\nnotifies\nframes_to_\nsend\n\n"
            "taken in turn:\nwho sends\nthe most waits\nfor its own", SHARED,
            weight="bold"),
        box(ax, 92, 39.5, 12, 22.5, "clients\n\n{ each open ws:\nits outbox }\n\n"
            "join() adds,\nleave() removes;\nthe room's\nsender copies it", SHARED,
            weight="bold"),
        box(ax, 92, 12, 12, 22.5, "history\n\nthe last\nHISTORY_SIZE\n(10) frames:\n"
            "the room's\nsender adds\neach broadcast;\njoin() sends\nthem to a\nnewcomer",
            SHARED, weight="bold"),
    ]
    return boxes, title


SENDER_WIDTH = 41.5  # drawing units: up to the arrow from to_send


def room_sender(ax, middle):
    """The one thread that writes to every client, between the two rows: a bold heading
    over what it does. Returns its box twice, once with each of its texts."""
    patch, _ = box(ax, 28.5, middle - 6.5, SENDER_WIDTH, 13, "", THREAD)
    heading = ax.text(28.5 + SENDER_WIDTH / 2, middle + 6.1,
                      "the room's sender: send_to_room(room)", ha="center", va="top",
                      fontsize=FONT, fontweight="bold")
    words = ax.text(28.5 + SENDER_WIDTH / 2, middle - 1.1,
                    "one thread per room, running until SENDER_IDLE of quiet. Under\n"
                    "room.lock, take_in_turn() takes one write's worth of to_send,\n"
                    "each address's oldest frame in turn; it adds the broadcast ones\n"
                    "to history and copies clients. Then, outside the lock,\n"
                    "send_frames() to each client: one non-blocking write (send_now)\n"
                    "if nothing waits in its outbox; else, or if the socket took only\n"
                    "part, into the outbox, and a writer starts",
                    ha="center", va="center", fontsize=FONT, linespacing=1.35)
    return [(patch, heading), (patch, words)]


def draw_hardened():
    fig, ax = canvas("How hardened/chat.py serves an app's room: two threads per"
                     " connection, one sender for the room, one lock for what they share")

    boxes, lock_title = hardened_shared_state(ax)
    arrows, labels = [], [lock_title]
    bob_bottom = 6
    middle = bob_bottom + ROW + BAND / 2  # of the band between the rows
    rows = {}
    for bottom, person, flipped in ((bob_bottom + ROW + BAND, "Ada", False),
                                    (bob_bottom, "Bob", True)):
        own_boxes, own_arrows, own_labels, rows[person] = hardened_connection(ax, bottom, person,
                                                                     flipped)
        boxes += own_boxes
        arrows += own_arrows
        labels += own_labels
    labels.append(ax.text(0.5, 0.5, "… and the same for every other browser: its own"
                          " socket, reader, handler and outbox, and a writer only while"
                          " it is behind; the room's sender, one thread per room, writes"
                          " to them all.",
                          fontsize=FONT, fontstyle="italic"))

    boxes += room_sender(ax, middle)
    arrows.append(arrow(ax, (78.1, middle), (28.9 + SENDER_WIDTH, middle), colour=LOCK))
    # Its label between the sender and the lock's frame, clear of both.
    labels.append(label(ax, (76.5 + 28.9 + SENDER_WIDTH) / 2, middle + 0.4,
                        "takes\nin turn", colour=LOCK))
    for person, y in rows.items():
        # Each handler hands its frames to the room's sender: every message, and an
        # error for the sender alone, in its address's turn, after what it sent before.
        above, below = ("bottom", "top") if person == "Ada" else ("top", "bottom")
        arrows += [arrow(ax, (54.9, y(13)), (78.1, y(13))),
                   arrow(ax, (54.9, y(10)), (78.1, y(10)), colour=ERROR, dashed=True),
                   # The room's sender writes a client's frames at once, or, while it is
                   # behind, into its outbox.
                   arrow(ax, (28.1, y(-4)), (22.4, y(-4)), colour=DELIVERY),
                   arrow(ax, (59, y(-2.1)), (59, y(0.6)), colour=DELIVERY)]
        labels += [label(ax, 55.5, y(13.4), "broadcast() → deliver() →\n"
                         "queue_to_send(room, frame,\nEVERYONE, its address)", ha="left",
                         va=above),
                   label(ax, 55.5, y(9.6), "an error: queue_to_send(room, reply,\n"
                         "ws, its address): to it alone, in turn", colour=ERROR, ha="left",
                         va=below),
                   label(ax, 25.25, y(-4) + 0.4, "bytes out", colour=DELIVERY),
                   label(ax, 59.6, (y(-2.1) + y(0.6)) / 2, "if behind", colour=DELIVERY,
                         ha="left", va="center")]

    return fig, boxes, arrows, labels


def clashes(fig, boxes, arrows, labels):
    """What runs into what, in the drawn picture: a box's text out of its box or into the
    box's other text, a label on a box, on another label or on an arrow. Empty in a clean
    drawing."""
    renderer = fig.canvas.get_renderer()

    def extent(artist, gap=0):
        return artist.get_window_extent(renderer).padded(gap)

    found = [f"{words.get_text()!r} spills out of its box" for patch, words in boxes
             if not extent(patch).contains(*extent(words).min)
             or not extent(patch).contains(*extent(words).max)]
    found += [f"{a.get_text()!r} runs into {b.get_text()!r}"  # a heading and its text
              for (box_a, a), (box_b, b) in itertools.combinations(boxes, 2)
              if box_a is box_b and extent(a, LABEL_GAP).overlaps(extent(b))]
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


# Each drawing: the file whose names it shows, and how it is drawn.
Drawing = namedtuple("Drawing", "source draw")
DRAWINGS = {
    "threads.png": Drawing("workshop/steps/05-writer/app.py", lambda: draw_card(STEP_05)),
    "threads-card.png": Drawing("app.py", lambda: draw_card(CARD)),
    "threads-hardened.png": Drawing("hardened/chat.py", draw_hardened),
}


def figure(name):
    """The drawing called name, checked: raises SystemExit if anything in it clashes."""
    fig, boxes, arrows, labels = DRAWINGS[name].draw()
    found = clashes(fig, boxes, arrows, labels)
    if found:
        plt.close(fig)
        raise SystemExit(f"{name} not drawn, because:\n" + "\n".join(found))
    return fig


def main():
    for name in DRAWINGS:
        fig = figure(name)
        fig.savefig(DOCS / name, bbox_inches="tight", pad_inches=0.2, facecolor="white")
        plt.close(fig)
        print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main()
