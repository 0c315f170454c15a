"""fake_providers.py: small local stand-ins for Stripe and Safaricom Daraja, so the real
plugin code runs over real HTTP in the tests. Standard library only.

Each fake is an HTTP server on 127.0.0.1 (a free port) that speaks the subset of its
provider's API that plugins/payments/<name>.lua uses, checks what the real provider checks
(keys, the STK password, form fields), and calls Spacer back the way the real provider does:

    stripe = FakeStripe(secret_key="sk_test_x", webhook_secret="whsec_x").start()
    # spacer.conf: [payments.stripe] base_url = stripe.url
    stripe.webhook_url = "http://127.0.0.1:PORT/api/payments/webhooks/stripe"
    stripe.succeed("pi_...")          # the card was confirmed: a signed webhook is sent
    daraja = FakeDaraja(...).start()
    daraja.callback(checkout_id)      # the payer entered the PIN: the STK callback is sent

Knobs: `delay` (seconds every API answer waits: a provider that times out), `calls` (a
list of (method, path) seen), per-object state in `intents` / `pushes`.

Run alone (python3 tests/fakes/fake_providers.py) to get both on fixed ports for `make run`.
"""
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Fake:
    def __init__(self, port=0):
        self.port = port
        self.delay = 0.0
        self.calls = []
        self.lock = threading.Lock()
        self.run = secrets.token_hex(4)  # ids differ between runs on one database
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _go(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                parsed = urllib.parse.urlsplit(self.path)
                with fake.lock:
                    fake.calls.append((method, parsed.path))
                if fake.delay:
                    time.sleep(fake.delay)
                status, payload = fake.handle(method, parsed.path,
                                              urllib.parse.parse_qs(parsed.query),
                                              {k.lower(): v for k, v in self.headers.items()},
                                              body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def do_GET(self):
                self._go("GET")

            def do_POST(self):
                self._go("POST")

        self.httpd = _Server(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def count(self, method, path_prefix):
        with self.lock:
            return len([c for c in self.calls if c[0] == method and c[1].startswith(path_prefix)])


def post_json(url, raw, headers, timeout=10):
    """POSTs raw bytes; returns (status, body text)."""
    req = urllib.request.Request(url, data=raw, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# Stripe -----------------------------------------------------------------------------------------

class FakeStripe(_Fake):
    def __init__(self, secret_key="sk_test_fake", webhook_secret="whsec_fake", port=0):
        super().__init__(port)
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = None
        self.intents = {}
        self.by_key = {}
        self.refunds = []
        self.seq = 0

    def _error(self, status, message, kind="invalid_request_error"):
        return status, {"error": {"type": kind, "message": message}}

    def handle(self, method, path, query, headers, body):
        if headers.get("authorization") != "Bearer " + self.secret_key:
            return self._error(401, "Invalid API Key provided", "authentication_error")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        key = headers.get("idempotency-key")
        with self.lock:
            if method == "POST" and key and key in self.by_key:
                return self.by_key[key]
            answer = self._route(method, path, form)
            if method == "POST" and key and answer[0] < 500:
                self.by_key[key] = answer
            return answer

    def _route(self, method, path, form):
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/payment_intents":
            for field in ("amount", "currency", "metadata[payment_id]"):
                if field not in form:
                    return self._error(400, "Missing required param: %s." % field)
            if not form["amount"].isdigit() or int(form["amount"]) < 1:
                return self._error(400, "Invalid integer: %s" % form["amount"])
            self.seq += 1
            pid = "pi_%s%06d" % (self.run, self.seq)
            pi = {"id": pid, "object": "payment_intent", "amount": int(form["amount"]),
                  "currency": form["currency"], "status": "requires_payment_method",
                  "client_secret": "%s_secret_%s" % (pid, hashlib.sha1(pid.encode()).hexdigest()[:12]),
                  "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}}
            self.intents[pid] = pi
            return 200, dict(pi)
        if len(parts) >= 3 and parts[:2] == ["v1", "payment_intents"]:
            pi = self.intents.get(parts[2])
            if pi is None:
                return self._error(404, "No such payment_intent: '%s'" % parts[2])
            if method == "GET" and len(parts) == 3:
                return 200, dict(pi)
            if method == "POST" and len(parts) == 4 and parts[3] == "cancel":
                if pi["status"] == "succeeded":
                    return self._error(400, "You cannot cancel this PaymentIntent because it "
                                            "has a status of succeeded.")
                pi["status"] = "canceled"
                return 200, dict(pi)
        if method == "POST" and path == "/v1/refunds":
            pi = self.intents.get(form.get("payment_intent"))
            if pi is None or pi["status"] != "succeeded":
                return self._error(400, "This PaymentIntent has not succeeded.")
            amount = int(form.get("amount") or pi["amount"])
            if amount > pi["amount"]:
                return self._error(400, "Refund amount is greater than the charge.")
            refund = {"id": "re_%s%06d" % (self.run, len(self.refunds) + 1), "object": "refund",
                      "amount": amount, "payment_intent": pi["id"], "status": "succeeded"}
            self.refunds.append(refund)
            return 200, refund
        return self._error(404, "Unrecognized request URL (%s: %s)" % (method, path))

    # What Stripe sends -------------------------------------------------------------------------

    def event(self, pid, kind):
        """The event body of kind for intent pid (its status updated), as bytes."""
        with self.lock:
            pi = self.intents[pid]
            if kind == "payment_intent.succeeded":
                pi["status"] = "succeeded"
                pi["amount_received"] = pi["amount"]
            elif kind == "payment_intent.payment_failed":
                pi["status"] = "requires_payment_method"
                pi["last_payment_error"] = {"code": "card_declined",
                                            "message": "Your card was declined."}
            self.seq += 1
            ev = {"id": "evt_%s%06d" % (self.run, self.seq), "object": "event", "type": kind,
                  "created": int(time.time()), "data": {"object": dict(pi)}}
        return json.dumps(ev).encode()

    def sign(self, raw, t=None, secret=None, extra_v1=()):
        t = int(time.time()) if t is None else t
        mac = hmac.new((secret or self.webhook_secret).encode(), b"%d." % t + raw,
                       hashlib.sha256).hexdigest()
        return ",".join(["t=%d" % t] + ["v1=%s" % v for v in extra_v1] + ["v1=%s" % mac])

    def send(self, raw, signature=None):
        """Delivers an event to webhook_url as Stripe does; returns (status, body)."""
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        if signature is not False:
            headers["Stripe-Signature"] = signature or self.sign(raw)
        return post_json(self.webhook_url, raw, headers)

    def succeed(self, pid):
        return self.send(self.event(pid, "payment_intent.succeeded"))

    def fail(self, pid):
        return self.send(self.event(pid, "payment_intent.payment_failed"))


# Daraja -----------------------------------------------------------------------------------------

class FakeDaraja(_Fake):
    def __init__(self, consumer_key="ck_fake", consumer_secret="cs_fake", shortcode="174379",
                 passkey="passkey_fake", port=0):
        super().__init__(port)
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.shortcode = shortcode
        self.passkey = passkey
        self.tokens = set()
        self.pushes = {}
        self.seq = 0
        self.query_result = None  # None: "being processed"; else a ResultCode string

    def _error(self, status, code, message):
        return status, {"requestId": "fake", "errorCode": code, "errorMessage": message}

    def handle(self, method, path, query, headers, body):
        if method == "GET" and path == "/oauth/v1/generate":
            expected = "Basic " + base64.b64encode(
                ("%s:%s" % (self.consumer_key, self.consumer_secret)).encode()).decode()
            if query.get("grant_type") != ["client_credentials"] or headers.get("authorization") != expected:
                return self._error(400, "400.008.01", "Invalid Authentication passed")
            with self.lock:
                self.seq += 1
                tok = "tok%06d" % self.seq
                self.tokens.add(tok)
            return 200, {"access_token": tok, "expires_in": "3599"}
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._error(401, "404.001.03", "Invalid Access Token")
        try:
            req = json.loads(body)
        except ValueError:
            return self._error(400, "400.002.02", "Bad Request - Invalid JSON")
        if req.get("BusinessShortCode") != self.shortcode:
            return self._error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
        ts = req.get("Timestamp", "")
        password = base64.b64encode((self.shortcode + self.passkey + ts).encode()).decode()
        if len(ts) != 14 or not ts.isdigit() or req.get("Password") != password:
            return self._error(400, "400.002.02", "Bad Request - Invalid Password")
        if method == "POST" and path == "/mpesa/stkpush/v1/processrequest":
            for field in ("TransactionType", "Amount", "PartyA", "PartyB", "PhoneNumber",
                          "CallBackURL", "AccountReference", "TransactionDesc"):
                if field not in req:
                    return self._error(400, "400.002.02", "Bad Request - Invalid %s" % field)
            if not isinstance(req["Amount"], int) or req["Amount"] < 1:
                return self._error(400, "400.002.02", "Bad Request - Invalid Amount")
            if not str(req["PhoneNumber"]).startswith("2547") and not str(req["PhoneNumber"]).startswith("2541"):
                return self._error(400, "400.002.02", "Bad Request - Invalid PhoneNumber")
            with self.lock:
                self.seq += 1
                cid = "ws_CO_%s%06d" % (self.run, self.seq)
                self.pushes[cid] = dict(req, MerchantRequestID="mr-%06d" % self.seq)
            return 200, {"MerchantRequestID": self.pushes[cid]["MerchantRequestID"],
                         "CheckoutRequestID": cid, "ResponseCode": "0",
                         "ResponseDescription": "Success. Request accepted for processing",
                         "CustomerMessage": "Success. Request accepted for processing"}
        if method == "POST" and path == "/mpesa/stkpushquery/v1/query":
            cid = req.get("CheckoutRequestID")
            if cid not in self.pushes:
                return self._error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
            if self.query_result is None:
                return self._error(500, "500.001.1001", "The transaction is being processed")
            return 200, {"ResponseCode": "0", "ResponseDescription": "The service request has "
                         "been accepted successsfully", "MerchantRequestID":
                         self.pushes[cid]["MerchantRequestID"], "CheckoutRequestID": cid,
                         "ResultCode": self.query_result, "ResultDesc": "fake result"}
        return self._error(404, "404.001.01", "Resource not found")

    def last_push(self):
        with self.lock:
            cid = sorted(self.pushes)[-1]
            return cid, self.pushes[cid]

    def callback_body(self, cid, result_code=0, amount=None, phone=None, receipt=None):
        push = self.pushes[cid]
        cb = {"MerchantRequestID": push["MerchantRequestID"], "CheckoutRequestID": cid,
              "ResultCode": result_code}
        if result_code == 0:
            cb["ResultDesc"] = "The service request is processed successfully."
            cb["CallbackMetadata"] = {"Item": [
                {"Name": "Amount", "Value": push["Amount"] if amount is None else amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt or ("R" + secrets.token_hex(5).upper())},
                {"Name": "TransactionDate", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(push["PhoneNumber"] if phone is None else phone)},
            ]}
        elif result_code == 1032:
            cb["ResultDesc"] = "Request cancelled by user"
        elif result_code == 1037:
            cb["ResultDesc"] = "DS timeout user cannot be reached"
        else:
            cb["ResultDesc"] = "The balance is insufficient for the transaction"
        return json.dumps({"Body": {"stkCallback": cb}}).encode()

    def callback(self, cid, url=None, **kw):
        """Sends the STK callback to the push's CallBackURL (or url); (status, body)."""
        raw = self.callback_body(cid, **kw)
        return post_json(url or self.pushes[cid]["CallBackURL"], raw,
                         {"Content-Type": "application/json"})


if __name__ == "__main__":
    s = FakeStripe(port=12111).start()
    d = FakeDaraja(port=12112).start()
    print("fake Stripe on %s (sk_test_fake, whsec_fake); fake Daraja on %s "
          "(ck_fake, cs_fake, 174379, passkey_fake)" % (s.url, d.url))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
