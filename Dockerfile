# Minimal placeholder; the "ship it" issue finishes the CUDA image.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir .
ENTRYPOINT ["audioret"]
