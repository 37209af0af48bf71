-- strata's durable state: what the local state dir holds as files, one row per document, and
-- the append-only logs (history, alerts) one row per record.
CREATE TABLE strata.documents (
    namespace  text        NOT NULL,
    path       text        NOT NULL,
    body       bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, path)
);

CREATE TABLE strata.log_lines (
    namespace text   NOT NULL,
    path      text   NOT NULL,
    seq       bigint GENERATED ALWAYS AS IDENTITY,
    line      text   NOT NULL,
    PRIMARY KEY (namespace, path, seq)
);
