"""A slixmpp client driven by the end-to-end tests.

Usage: client.py JID PASSWORD HOST PORT TRANSPORT CA. Commands arrive on
stdin, one JSON object a line; what happens is printed as one JSON object a
line. TRANSPORT is "plain" (no TLS even when offered, PLAIN over the bare
connection), "starttls" or "direct" (XEP-0368); with TLS the server's
certificate is verified against the CA file only.
"""

import asyncio
import json
import sys

import slixmpp


def out(event, **fields):
    fields["event"] = event
    print(json.dumps(fields), flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, transport, ca):
        super().__init__(jid, password)
        self.enable_starttls = transport == "starttls"
        self.enable_direct_tls = transport == "direct"
        self.enable_plaintext = transport == "plain"
        if transport != "plain":
            self.ca_certs = ca
        for plugin in ["xep_0030", "xep_0045", "xep_0085", "xep_0199", "xep_0363"]:
            self.register_plugin(plugin)
        self.plugin["feature_mechanisms"].unencrypted_plain = transport == "plain"
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("message", self.message)
        self.add_event_handler("groupchat_message", self.message)
        self.add_event_handler("chatstate_composing", self.composing)
        self.add_event_handler("disconnected", lambda _: out("disconnected"))

    async def started(self, _):
        self.send_presence()
        await self.get_roster()
        out("ready", jid=str(self.boundjid))
        asyncio.ensure_future(self.commands())

    def message(self, msg):
        if msg["type"] == "error" or not msg["body"]:
            return
        out("message", type=msg["type"], sender=str(msg["from"]), body=msg["body"])

    def composing(self, msg):
        out("composing", sender=str(msg["from"]))

    async def commands(self):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            try:
                await self.run(command)
            except Exception as e:  # reported, so the test names the cause
                out("error", command=command["do"], reason=repr(e))
        self.disconnect()

    async def run(self, c):
        do = c["do"]
        if do == "chat":
            self.send_message(mto=c["to"], mbody=c["body"], mtype=c.get("type", "chat"))
        elif do == "composing":
            msg = self.make_message(mto=c["to"], mtype="chat")
            msg["chat_state"] = "composing"
            msg.send()
        elif do == "join":
            await self.plugin["xep_0045"].join_muc_wait(c["room"], c["nick"], maxstanzas=0)
            out("joined", room=c["room"])
        elif do == "raw":
            self.send_raw(c["xml"])
        elif do == "slot":
            service = await self.plugin["xep_0363"].find_upload_service()
            slot = await self.plugin["xep_0363"].request_slot(
                service["from"], c["filename"], c["size"], c["content_type"]
            )
            out("slot", service=str(service["from"]), get=slot["http_upload_slot"]["get"]["url"])
        elif do == "ping":
            await self.plugin["xep_0199"].ping(c["to"], timeout=10)
            out("pong", to=c["to"], id=c["id"])


def main():
    jid, password, host, port, transport, ca = sys.argv[1:7]
    client = Client(jid, password, transport, ca)
    client.connect(host, int(port))
    asyncio.get_event_loop().run_until_complete(client.disconnected)


if __name__ == "__main__":
    main()
