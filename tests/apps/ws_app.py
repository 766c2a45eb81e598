"""The FastAPI app behind bellhop in the uvicorn end-to-end test.

- WebSocket /ws: sends {"seq": 0}, {"seq": 1}, ... one every 0.5 s, like a live
  dashboard pushing to every browser.
- GET /client: the client address uvicorn resolved (from X-Forwarded-For when started
  with --proxy-headers --forwarded-allow-ips 127.0.0.1), and the scheme it saw.

Run by tests/it/uvicorn.rs with .venv/bin/uvicorn (see tests/apps/requirements.txt).
"""

import asyncio

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

app = FastAPI()

PUSH_EVERY_S = 0.5


@app.get("/client")
async def client(request: Request) -> dict:
    host = request.client.host if request.client else None
    return {
        "client_host": host,
        "scheme": request.url.scheme,
        "x_forwarded_for": request.headers.get("x-forwarded-for"),
    }


@app.websocket("/ws")
async def push(websocket: WebSocket) -> None:
    await websocket.accept()
    seq = 0
    try:
        while True:
            await websocket.send_json({"seq": seq})
            seq += 1
            await asyncio.sleep(PUSH_EVERY_S)
    except (WebSocketDisconnect, RuntimeError):
        pass
