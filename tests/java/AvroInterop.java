import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

/**
 * What the reference Java implementations make of the scorer's wire format.
 *
 * <p>One mode a run; input lines on stdin, one answer line per input line on
 * stdout (Apache Avro's Java library for the schemas and the single-object
 * encoding, Kafka's Java client for key placement):
 *
 * <pre>
 * fingerprint FILE...    CRC-64-AVRO of each schema's canonical form, as
 *                        the 8 bytes of a single-object header, in hex
 * encode FILE            Avro JSON datums in, single-object messages out (hex)
 * decode FILE            single-object messages (hex) in, Avro JSON out
 * partition N            keys (UTF-8 text) in, the Java producer's partition out
 * </pre>
 */
public final class AvroInterop {
  private static final HexFormat HEX = HexFormat.of();

  public static void main(String[] args) throws Exception {
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    switch (args[0]) {
      case "fingerprint" -> {
        for (int i = 1; i < args.length; i++) {
          out.println(header(SchemaNormalization.parsingFingerprint64(schema(args[i]))));
        }
      }
      case "encode" -> encode(schema(args[1]), in, out);
      case "decode" -> decode(schema(args[1]), in, out);
      case "partition" -> partition(Integer.parseInt(args[1]), in, out);
      default -> throw new IllegalArgumentException("unknown mode " + args[0]);
    }
  }

  private static Schema schema(String path) throws Exception {
    return new Schema.Parser().parse(new File(path));
  }

  /** The fingerprint as a single-object header carries it: least significant byte first. */
  private static String header(long fingerprint) {
    byte[] bytes = ByteBuffer.allocate(8).putLong(Long.reverseBytes(fingerprint)).array();
    return HEX.formatHex(bytes);
  }

  private static void encode(Schema schema, BufferedReader in, PrintStream out)
      throws Exception {
    GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
    BinaryMessageEncoder<GenericRecord> encoder =
        new BinaryMessageEncoder<>(GenericData.get(), schema);

    for (String line = in.readLine(); line != null; line = in.readLine()) {
      GenericRecord datum = reader.read(null, DecoderFactory.get().jsonDecoder(schema, line));
      ByteBuffer message = encoder.encode(datum);
      byte[] bytes = new byte[message.remaining()];
      message.get(bytes);
      out.println(HEX.formatHex(bytes));
    }
  }

  private static void decode(Schema schema, BufferedReader in, PrintStream out)
      throws Exception {
    BinaryMessageDecoder<GenericRecord> decoder =
        new BinaryMessageDecoder<>(GenericData.get(), schema);
    GenericDatumWriter<GenericRecord> writer = new GenericDatumWriter<>(schema);

    for (String line = in.readLine(); line != null; line = in.readLine()) {
      GenericRecord datum = decoder.decode(HEX.parseHex(line));
      ByteArrayOutputStream json = new ByteArrayOutputStream();
      JsonEncoder encoder = EncoderFactory.get().jsonEncoder(schema, json);
      writer.write(datum, encoder);
      encoder.flush();
      out.println(json.toString(StandardCharsets.UTF_8));
    }
  }

  private static void partition(int partitions, BufferedReader in, PrintStream out)
      throws Exception {
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      byte[] key = line.getBytes(StandardCharsets.UTF_8);
      out.println(BuiltInPartitioner.partitionForKey(key, partitions));
    }
  }
}
