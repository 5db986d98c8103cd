wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
wrk.path = "/v1/chat/completions"
