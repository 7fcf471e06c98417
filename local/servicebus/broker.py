"""The AMQP 1.0 side: proton events in, queue operations and settlements out.

Everything runs on the server's single thread (server.py). Every handler is guarded so a bad client
costs only its own connection, and newly ready messages are dispatched after each event.
"""

from __future__ import annotations

import functools
import itertools
import time
import traceback
from collections import deque
from collections.abc import Callable

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, Terminus, symbol

from . import codec, links
from .cbs import TokenRejected, covers, verify_sas
from .log import log
from .management import LOCK_LOST, MAX_MESSAGE_SIZE, Management
from .queues import EntityNotFound, Namespace, SubQueue, Topic
from .render import render

# A transfer still growing past this is not going to be accepted; stop buffering it.
HARD_TRANSFER_LIMIT = 4 * MAX_MESSAGE_SIZE
PRODUCER_CREDIT = 500
CONTROL_CREDIT = 50
_ACTIVE = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self: Broker, event) -> None:
        try:
            method(self, event)
        except Exception as exc:  # noqa: BLE001 - one client's failure must not stop the reactor
            self._fail_connection(event, exc)
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001
            log("dispatch_failed", "error", error=repr(exc), trace=traceback.format_exc(limit=5))

    return wrapper


def _error(name: str, description: str) -> Condition:
    # pyamqp reads an error's info field by index, so an error without one crashes the SDK.
    return Condition(name, description, {symbol("component"): "local-servicebus"})


def _source_filters(link: Link) -> dict:
    data = link.remote_source.filter
    data.rewind()
    if not data.next():
        return {}
    value = data.get_object()
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _filter_refusal(link: Link, sub: SubQueue) -> tuple[str, str] | None:
    """Why a receiver's source filter cannot be honoured (Service Bus's condition and words), if it cannot."""
    filters = _source_filters(link)
    if links.SESSION_FILTER in filters:
        # No queue here requires sessions (the emulator has none), so this is what Service Bus answers.
        return ("amqp:not-allowed",
                f"A sessionful message receiver cannot be created on an entity that does not require sessions "
                f"('{sub.path}'). Ensure RequiresSession is set to true when creating a Queue or Subscription to "
                "enable sessionful behavior. (The local emulator has no session-enabled queues: receive with a "
                "plain receiver.)")
    if filters:
        return ("amqp:not-implemented",
                f"Receiver filters {sorted(filters)} are not supported by the local Service Bus emulator.")
    return None


def _usable(link: Link) -> bool:
    return (link.state & _ACTIVE) == _ACTIVE and not getattr(link, "sb_dead", False)


class Broker(Handler):
    def __init__(
        self, namespace: Namespace, key_name: str, key: str, clock: Callable[[], float] = time.time, issuer=None
    ) -> None:
        """clock: Unix seconds, the scale SAS token expiries are written in. issuer: identity.Issuer, to
        accept Entra ID (jwt) tokens it signed."""
        super().__init__()
        self.issuer = issuer
        self.ns = namespace
        self.mgmt = Management(namespace)
        self.key_name, self.key = key_name, key
        self.clock = clock
        self.stop_requested = False
        self._tags = itertools.count(1)
        self._connections = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------------

    def on_tick(self) -> None:
        """Called by the server every tick_s: lock expiry, scheduled messages, TTL."""
        try:
            self.ns.tick()
            self._flush()
        except Exception as exc:  # noqa: BLE001
            log("tick_failed", "error", error=repr(exc), trace=traceback.format_exc(limit=5))

    def before_output(self) -> None:
        """Called by the server before it writes to any socket: commit the store's open transaction."""
        self.ns.store.flush()

    # -- connections and sessions ---------------------------------------------------------------

    @_guarded
    def on_connection_remote_open(self, event) -> None:
        conn = event.connection
        conn.sb_id = next(self._connections)
        conn.sb_grants = []
        conn.sb_links = []
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.open()
        log("connection_opened", conn=conn.sb_id, client=conn.remote_container)

    @_guarded
    def on_session_remote_open(self, event) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @_guarded
    def on_session_remote_close(self, event) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    @_guarded
    def on_connection_remote_close(self, event) -> None:
        self._forget_connection(event.connection)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()
        log("connection_closed", conn=getattr(event.connection, "sb_id", None))

    def on_transport_error(self, event) -> None:
        cond = event.transport.condition
        if cond and cond.description and cond.description.startswith("no such channel"):
            # The SDK detaches its management link after ending the session; proton calls that a
            # protocol error, but the client is closing anyway and nothing is lost.
            log("client_closed_untidily", conn=getattr(event.connection, "sb_id", None) if event.connection else None)
            return
        log("transport_error", "warning", conn=getattr(event.connection, "sb_id", None) if event.connection else None,
            condition=cond.name if cond else None, description=cond.description if cond else None)

    def on_transport_closed(self, event) -> None:
        try:
            if event.connection is not None:
                self._forget_connection(event.connection)
        except Exception as exc:  # noqa: BLE001
            log("cleanup_failed", "error", error=repr(exc))

    def _forget_connection(self, conn) -> None:
        for link in getattr(conn, "sb_links", []):
            self._forget_link(link)
        conn.sb_links = []

    def _forget_link(self, link: Link) -> None:
        link.sb_dead = True
        sub = getattr(link, "sb_sub", None)
        if sub is not None and link in sub.consumers:
            sub.consumers.remove(link)

    def _fail_connection(self, event, exc: Exception) -> None:
        conn = event.connection
        log("handler_failed", "error", conn=getattr(conn, "sb_id", None) if conn else None, error=repr(exc),
            trace=traceback.format_exc(limit=8))
        if conn is not None and not conn.state & Endpoint.LOCAL_CLOSED:
            self._forget_connection(conn)
            conn.condition = _error("amqp:internal-error", f"emulator error: {exc}")
            conn.close()

    # -- links ----------------------------------------------------------------------------------

    @_guarded
    def on_link_remote_open(self, event) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        conn = link.connection
        conn.sb_links.append(link)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        path = links.entity_path(address)
        link.sb_outbox = deque()
        if path == links.CBS:
            link.sb_kind = "cbs-out" if link.is_sender else "cbs-in"
            if link.is_sender:
                conn.sb_cbs_out = link
            self._open(link)
            if link.is_receiver:
                link.flow(CONTROL_CREDIT)
            return
        if (link.remote_target.type if link.is_receiver else link.remote_source.type) == Terminus.COORDINATOR:
            return self._refuse(link, "amqp:not-implemented",
                                "Transactions are not supported by the local Service Bus emulator.")
        entity, is_management = links.split_management(path)
        try:
            sub = self.ns.resolve(entity)
        except EntityNotFound:
            return self._refuse(link, "amqp:not-found",
                                f"The messaging entity '{entity}' could not be found. (local emulator)")
        if not self._authorized(conn, entity):
            return self._refuse(link, "amqp:unauthorized-access",
                                f"Unauthorized access to '{entity}': put a valid token on $cbs first.")
        link.sb_sub = sub
        if is_management:
            link.sb_kind = "mgmt-out" if link.is_sender else "mgmt-in"
            link.sb_reply_address = path.lower()
            self._open(link)
            if link.is_receiver:
                link.flow(CONTROL_CREDIT)
            return
        if link.is_sender:
            if isinstance(sub, Topic):
                return self._refuse(link, "amqp:not-allowed",
                                    f"Cannot receive from topic '{sub.path}': receive from one of its subscriptions, "
                                    f"'{sub.path}/Subscriptions/<name>'.")
            refusal = _filter_refusal(link, sub)
            if refusal is not None:
                return self._refuse(link, *refusal)
            link.sb_kind = "consumer"
            link.sb_peek_lock = link.snd_settle_mode != Link.SND_SETTLED
            self._open(link)
            sub.consumers.append(link)
            self.ns.dirty.add(sub)
        else:
            if sub.dead_letter:
                return self._refuse(link, "amqp:not-allowed", "Messages cannot be sent to a dead-letter queue.")
            if not isinstance(sub, Topic) and sub.queue.config.topic:
                return self._refuse(link, "amqp:not-allowed",
                                    f"Cannot send to subscription '{sub.path}': send to its topic, "
                                    f"'{sub.queue.config.topic}'.")
            link.sb_kind = "producer"
            link.sb_target = sub if isinstance(sub, Topic) else sub.queue
            link.max_message_size = MAX_MESSAGE_SIZE
            self._open(link)
            link.flow(PRODUCER_CREDIT)
        log("link_attached", conn=conn.sb_id, kind=link.sb_kind, entity=sub.path, name=link.name)

    def _open(self, link: Link) -> None:
        # The SDK drops a link whose attach reply lacks a source or a target, so echo both.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.open()

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        """Attach with a null terminus, then detach with the error, as Service Bus does."""
        log("link_refused", "warning", conn=link.connection.sb_id, address=link.remote_target.address
            if link.is_receiver else link.remote_source.address, condition=condition)
        link.sb_kind = "refused"
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = _error(condition, description)
        link.close()

    def _authorized(self, conn, entity: str) -> bool:
        now = self.clock()
        return any(g.expires_s > now and covers(g.path, entity) for g in conn.sb_grants)

    @_guarded
    def on_link_remote_close(self, event) -> None:
        link = event.link
        self._forget_link(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @_guarded
    def on_link_flow(self, event) -> None:
        link = event.link
        kind = getattr(link, "sb_kind", None)
        if kind == "consumer":
            self._dispatch(link.sb_sub, only=link)
        elif link.is_sender:
            self._pump(link)

    # -- deliveries -----------------------------------------------------------------------------

    @_guarded
    def on_delivery(self, event) -> None:
        dlv = event.delivery
        link = dlv.link
        if link.is_receiver:
            self._incoming(link, dlv)
        elif getattr(link, "sb_kind", None) == "consumer":
            self._settlement(dlv)
        elif dlv.settled:  # proton: settled by the remote peer
            dlv.settle()

    def _incoming(self, link: Link, dlv: Delivery) -> None:
        if dlv.aborted:
            dlv.settle()
            return
        if dlv.partial:
            if dlv.pending > HARD_TRANSFER_LIMIT:
                log("transfer_too_large", "warning", conn=link.connection.sb_id, pending=dlv.pending)
                link.recv(dlv.pending)
                link.condition = _error("amqp:link:message-size-exceeded",
                                           f"Message over the {MAX_MESSAGE_SIZE} byte limit.")
                self._forget_link(link)
                link.close()
            return
        raw = link.recv(dlv.pending) or b""
        link.advance()
        kind = getattr(link, "sb_kind", None)
        if link.credit < (PRODUCER_CREDIT if kind == "producer" else CONTROL_CREDIT) // 2 and _usable(link):
            link.flow((PRODUCER_CREDIT if kind == "producer" else CONTROL_CREDIT) - link.credit)
        if kind == "producer":
            self._on_send(link, dlv, raw)
        elif kind == "cbs-in":
            self._on_cbs(link, dlv, raw)
        elif kind == "mgmt-in":
            self._on_management(link, dlv, raw)
        else:
            self._reject(dlv, "amqp:not-allowed", "This link does not accept messages.")

    def _reject(self, dlv: Delivery, condition: str, description: str) -> None:
        dlv.local.condition = _error(condition, description)
        dlv.update(Delivery.REJECTED)
        dlv.settle()

    def _accept(self, dlv: Delivery) -> None:
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()

    def _on_send(self, link: Link, dlv: Delivery, raw: bytes) -> None:
        sub: SubQueue | Topic = link.sb_sub
        if len(raw) > MAX_MESSAGE_SIZE:
            log("message_refused", "warning", conn=link.connection.sb_id, queue=sub.path, size=len(raw))
            return self._reject(dlv, "amqp:link:message-size-exceeded",
                                f"The message of {len(raw)} bytes is over the {MAX_MESSAGE_SIZE} byte limit.")
        try:
            parsed = codec.parse_transfer(raw)
        except codec.DecodeError as exc:
            log("message_refused", "warning", conn=link.connection.sb_id, queue=sub.path, error=str(exc))
            return self._reject(dlv, "amqp:decode-error", f"Malformed message: {exc}")
        self.ns.enqueue(link.sb_target, parsed)
        self._accept(dlv)

    def _on_cbs(self, link: Link, dlv: Delivery, raw: bytes) -> None:
        request = Message()
        try:
            request.decode(raw)
        except Exception as exc:  # noqa: BLE001 - proton raises its own MessageException family
            return self._reject(dlv, "amqp:decode-error", f"Malformed CBS request: {exc}")
        self._accept(dlv)
        props = request.properties or {}
        audience = str(props.get("name", ""))
        if props.get("operation") != "put-token":
            status, description = 400, f"Unsupported CBS operation {props.get('operation')!r}"
        else:
            try:
                token = request.body.decode() if isinstance(request.body, bytes | memoryview) else str(request.body)
                # Told apart by content, as the SDK also sends SAS tokens a credential hands out as type jwt.
                if not token.startswith("SharedAccessSignature "):  # Entra ID: the local issuer's (identity.py)
                    if self.issuer is None:
                        raise TokenRejected("InvalidToken: Entra ID (jwt) tokens are not enabled on this emulator")
                    grant = self.issuer.verify(token, audience, self.clock())
                else:
                    grant = verify_sas(token, audience, self.key_name, self.key, self.clock())
            except TokenRejected as exc:
                status, description = 401, str(exc)
                log("token_refused", "warning", conn=link.connection.sb_id, audience=audience, reason=str(exc))
            else:
                link.connection.sb_grants.append(grant)
                status, description = 202, "Accepted"
        reply = Message(correlation_id=request.id, properties={"status-code": status, "status-description": description})
        out = getattr(link.connection, "sb_cbs_out", None)
        if out is not None and _usable(out):
            self._send_control(out, reply.encode())

    def _on_management(self, link: Link, dlv: Delivery, raw: bytes) -> None:
        request = Message()
        try:
            request.decode(raw)
        except Exception as exc:  # noqa: BLE001
            return self._reject(dlv, "amqp:decode-error", f"Malformed management request: {exc}")
        self._accept(dlv)
        props = request.properties or {}
        body = codec._own(request.body)
        result = self.mgmt.handle(link.sb_sub, str(props.get("operation", "")), body)
        if result.status >= 300:
            log("management_error", "warning", conn=link.connection.sb_id, operation=props.get("operation"),
                status=result.status, description=result.description)
        reply = Message(correlation_id=request.id, properties=result.application_properties(), body=result.body)
        out = self._reply_link(link.connection, request.reply_to, link.sb_sub)
        if out is None:
            log("management_reply_dropped", "warning", conn=link.connection.sb_id, reply_to=request.reply_to)
            return
        self._send_control(out, reply.encode())

    def _reply_link(self, conn, reply_to: str | None, sub: SubQueue) -> Link | None:
        wanted = links.entity_path(reply_to).lower() if reply_to else None
        fallback = None
        for link in conn.sb_links:
            if getattr(link, "sb_kind", None) != "mgmt-out" or not _usable(link):
                continue
            if wanted and link.sb_reply_address == wanted:
                return link
            if link.sb_sub is sub:
                fallback = link
        return fallback

    def _send_control(self, link: Link, payload: bytes) -> None:
        link.sb_outbox.append(payload)
        self._pump(link)

    def _pump(self, link: Link) -> None:
        outbox = getattr(link, "sb_outbox", None)
        while outbox and link.credit > 0 and _usable(link):
            dlv = link.delivery(str(next(self._tags)).encode())
            link.send(outbox.popleft())
            link.advance()
            if link.snd_settle_mode == Link.SND_SETTLED:
                dlv.settle()

    # -- consumers ------------------------------------------------------------------------------

    def _flush(self) -> None:
        for _ in range(10):
            if not self.ns.dirty:
                return
            dirty = list(self.ns.dirty)
            self.ns.dirty.clear()
            for sub in dirty:
                self._dispatch(sub)

    def _dispatch(self, sub: SubQueue, only: Link | None = None) -> None:
        ready = [link for link in ([only] if only else sub.consumers) if link.credit > 0 and _usable(link)]
        turn = 0
        while ready and sub.has_ready():
            link = ready[turn % len(ready)]
            record = self.ns.take(sub)
            if record is None:
                break
            self._deliver(link, record)
            if link.credit <= 0:
                ready.remove(link)
            else:
                turn += 1
        for link in [only] if only else sub.consumers:
            if link.drain_mode and link.credit > 0 and _usable(link):
                link.drained()

    def _deliver(self, link: Link, record) -> None:
        if link.sb_peek_lock:
            lock = self.ns.lock(record)
            dlv = link.delivery(codec.lock_token_tag(lock.token))
            dlv.sb_lock = lock
            link.send(render(record, lock.until_ms))
            link.advance()
        else:
            payload = render(record)
            self.ns.delete_delivered(record)
            dlv = link.delivery(str(next(self._tags)).encode())
            link.send(payload)
            link.advance()
            dlv.settle()

    def _settlement(self, dlv: Delivery) -> None:
        if not dlv.updated and not dlv.remote_state:
            return
        lock = getattr(dlv, "sb_lock", None)
        state = dlv.remote_state
        if lock is None or dlv.settled and not state:
            dlv.settle()
            return
        if state == Delivery.RELEASED:
            if lock.live:
                self.ns.release(lock)
            dlv.settle()
            return
        if not self.ns.is_live(lock):
            # The lock ran out before the client settled: it must learn the message may be redelivered.
            return self._reject(dlv, LOCK_LOST, "The lock supplied is invalid: it expired or was already released.")
        remote = dlv.remote
        if state == Delivery.ACCEPTED:
            self.ns.complete(lock)
        elif state == Delivery.MODIFIED:
            dlv.local.failed = remote.failed
            dlv.local.undeliverable = remote.undeliverable
            if remote.annotations:  # Service Bus's propertiesToModify: merged into the application properties
                self.ns.modify_properties(lock, {str(k): v for k, v in codec._own(remote.annotations).items()})
            if remote.undeliverable:
                self.ns.defer(lock)
            elif remote.failed:
                self.ns.abandon(lock)
            else:
                self.ns.release(lock)
        elif state == Delivery.REJECTED:
            info = (remote.condition.info if remote.condition else None) or {}
            reason = info.get("DeadLetterReason")
            description = info.get("DeadLetterErrorDescription")
            self.ns.dead_letter(lock, None if reason is None else str(reason),
                                None if description is None else str(description))
        else:
            return  # 'received' and other non-terminal states change nothing
        dlv.update(state)
        dlv.settle()
