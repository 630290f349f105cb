-- Run once by the mysql image on an empty data directory
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/).
-- A demo schema for scenario 6 (binlog sync), the user sluice reads the
-- binlog with, and the user it applies the changes into shop_replica with.

CREATE DATABASE shop;
CREATE TABLE shop.customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(80) NOT NULL,
  email VARCHAR(120) NOT NULL,
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  created DATETIME(6) NOT NULL
);
CREATE TABLE shop.orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  note TEXT NULL,
  updated TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);
INSERT INTO shop.customers (name, email, balance, created) VALUES
  ('Ada', 'ada@example.com', 120.50, '2026-01-05 10:00:00.000001'),
  ('Grace', 'grace@example.com', 80.00, '2026-02-11 08:30:00.250000'),
  ('Linus', 'linus@example.com', 0.00, '2026-03-20 17:45:12.000000');
INSERT INTO shop.orders (customer_id, amount, status, note) VALUES
  (1, 19.99, 'paid', NULL),
  (1, 5.00, 'shipped', 'gift wrap'),
  (2, 42.00, 'new', NULL),
  (3, 7.50, 'cancelled', 'changed mind');

-- The replica database (tables are created by the apply sink,
-- create_tables: true in pipelines/binlog-sync.yaml).
CREATE DATABASE shop_replica;

-- Binlog reader: replication, snapshot (SELECT; FLUSH TABLES WITH READ
-- LOCK on MySQL needs RELOAD) and the schema read by create_tables.
CREATE USER 'repl'@'%' IDENTIFIED WITH mysql_native_password BY 'repl-secret';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD, LOCK TABLES ON *.* TO 'repl'@'%';
GRANT SELECT ON shop.* TO 'repl'@'%';

-- Apply sink: the replica tables and its position table (database sluice).
CREATE USER 'sluice'@'%' IDENTIFIED WITH mysql_native_password BY 'sluice-secret';
GRANT ALL PRIVILEGES ON shop_replica.* TO 'sluice'@'%';
GRANT ALL PRIVILEGES ON sluice.* TO 'sluice'@'%';
