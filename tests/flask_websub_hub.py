"""A WebSub hub and subscriber nobody here wrote: Flask-WebSub's, on 127.0.0.1, in background threads.

Its hub takes publish pings (PUBLISH_SUPPORTED), fetches the topic from the publisher's web server and POSTs it,
signed, to every verified subscriber; Celery runs its tasks eagerly, in the request that starts them. The
publisher's web server sends the WebSub Link headers (rel="hub", rel="self") the Recommendation asks of it,
as the README's nginx and Caddy snippets do.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Log:
    pings: list[tuple[dict[str, list[str]], int]] = field(default_factory=list)  # (form, status answered)
    deliveries: list[tuple[float, str, bytes]] = field(default_factory=list)  # (time, topic, body)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FlaskWebSub:
    """`hub_url`, `feeds_url` (serving `root`) and `subscribe(topic)`; a context manager."""

    def __init__(self, root: Path) -> None:
        from celery import Celery
        from flask import Flask, request
        from flask_websub.hub import Hub, SQLite3HubStorage
        from flask_websub.subscriber import SQLite3SubscriberStorage, SQLite3TempSubscriberStorage, Subscriber
        from werkzeug.serving import make_server

        self.log = Log()
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        celery = Celery("hub", broker="memory://")
        celery.conf.task_always_eager = True
        hub_app = Flask("hub")
        hub_app.config["PUBLISH_SUPPORTED"] = True
        hub = Hub(SQLite3HubStorage(str(tmp / "hub.sqlite3")), celery, PUBLISH_SUPPORTED=True, REQUEST_TIMEOUT=5)
        hub_app.register_blueprint(hub.build_blueprint(url_prefix="/hub"))

        @hub_app.after_request
        def record(resp):
            if request.form.get("hub.mode") == "publish":
                with self.log.lock:
                    self.log.pings.append((request.form.to_dict(flat=False), resp.status_code))
            return resp

        self._servers = [make_server("127.0.0.1", 0, hub_app, threaded=True)]
        self.hub_url = f"http://127.0.0.1:{self._servers[0].server_port}/hub"

        sub_server = make_server("127.0.0.1", 0, None, threaded=True)
        sub_app = Flask("subscriber")
        sub_app.config["SERVER_NAME"] = f"127.0.0.1:{sub_server.server_port}"
        sub_server.app = sub_app
        self._subscriber = Subscriber(SQLite3SubscriberStorage(str(tmp / "sub.sqlite3")),
                                      SQLite3TempSubscriberStorage(str(tmp / "subtmp.sqlite3")))
        sub_app.register_blueprint(self._subscriber.build_blueprint(url_prefix="/callbacks"))
        self._sub_app = sub_app
        self._subscriber.add_listener(self._delivered)
        self._servers.append(sub_server)

        hub_url = self.hub_url

        class Feeds(SimpleHTTPRequestHandler):
            extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".xml": "application/atom+xml",
                              ".json": "application/feed+json"}

            def log_message(self, *args) -> None:
                pass

            def end_headers(self) -> None:
                topic = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
                self.send_header("Link", f'<{hub_url}>; rel="hub", <{topic}>; rel="self"')
                super().end_headers()

        self._feeds = ThreadingHTTPServer(("127.0.0.1", 0), partial(Feeds, directory=str(root)))
        self._feeds.daemon_threads = True
        self.feeds_url = f"http://127.0.0.1:{self._feeds.server_address[1]}/feeds/"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True)
                         for s in (*self._servers, self._feeds)]

    def _delivered(self, topic: str, callback_id: str, body: bytes) -> None:
        with self.log.lock:
            self.log.deliveries.append((time.time(), topic, body))

    def subscribe(self, topic: str) -> None:
        """Subscribe through the hub; returns once the hub verified the subscription (eager Celery)."""
        with self._sub_app.app_context():
            self._subscriber.subscribe(topic_url=topic, hub_url=self.hub_url)

    def __enter__(self) -> FlaskWebSub:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (*self._servers, self._feeds):
            server.shutdown()
            server.server_close()
        self._tmp.cleanup()
