"""The hardened chat: one room, as in the top-level app.py, with what it takes to hold up
on the open internet. chat.py is the chat, chat.html its page, safeguards/ what works
around the libraries or guards the door; docs/ describes it.

Run it alone with `flask --app hardened run`; or copy this folder beside your app's module
(or inside its package) and register its Blueprint at any prefix:

    import hardened          # or, inside a package: from . import hardened
    app.register_blueprint(hardened.bp, url_prefix="/chat")

Each app it is registered on has a room of its own (hardened.chat.room_of(app)), with the
settings in that app's config, each named CHAT_ and the setting's name (docs/limits.md):

    app.config["CHAT_HISTORY_SIZE"] = 30  # before registering: it is read then

and, if the host has logins, two functions the chat calls in the request of its page and
of its socket: who may enter (the page answers others 403, the socket closes with 1008
and the reason), and the name each speaks under (the page then asks for none):

    app.config["CHAT_ALLOW"] = lambda: "user" in session
    app.config["CHAT_SPEAKER"] = lambda: session.get("user")
"""
from .chat import bp, create_app

__all__ = ["bp", "create_app"]
